"""Customer notifications: a provider protocol and the local implementation."""

from __future__ import annotations

import uuid
from typing import Protocol

from pipeline.local_providers import LocalRecorder


class Notifier(Protocol):
    """Sends one message to a customer; the same idempotency key never sends twice."""

    def send(self, *, order_id: uuid.UUID, kind: str, user_id: str, idempotency_key: str) -> str: ...


class LocalNotifier:
    """Records messages in local_deliveries instead of emailing anyone."""

    def __init__(self, recorder: LocalRecorder) -> None:
        self.recorder = recorder

    def send(self, *, order_id: uuid.UUID, kind: str, user_id: str, idempotency_key: str) -> str:
        return self.recorder.deliver(order_id, idempotency_key, {"kind": kind, "user_id": user_id})

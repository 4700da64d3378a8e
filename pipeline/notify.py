"""Customer notifications: what a message says, a provider protocol, and the local implementation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from models.status import NotificationKind
from pipeline.local_providers import LocalRecorder


@dataclass(frozen=True)
class Notice:
    """One message to one customer about one order: what its templates need, and the key a resend repeats."""

    order_id: uuid.UUID
    kind: NotificationKind
    user_id: str
    email: str | None  # None: the shop gave no address, so there is nobody to e-mail
    total_cents: int
    currency: str
    lines: int
    reason: str | None  # a cancellation's code
    idempotency_key: str


class Notifier(Protocol):
    """Sends one message to a customer; returns the provider's reference for it."""

    def send(self, notice: Notice) -> str: ...


class LocalNotifier:
    """Records messages in local_deliveries instead of e-mailing anyone; the same key never records twice."""

    def __init__(self, recorder: LocalRecorder) -> None:
        self.recorder = recorder

    def send(self, notice: Notice) -> str:
        return self.recorder.deliver(
            notice.order_id, notice.idempotency_key, {"kind": notice.kind.value, "user_id": notice.user_id}
        )

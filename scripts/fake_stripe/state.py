"""In-memory Stripe account behind one lock: operations, saved idempotent responses and due settling."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .account import Account
from .events import EventBus
from .faults import FaultInjector
from .objects import Json, Reply, error_body
from .params import ApiFailure
from .settling import settle_due

Fingerprint = tuple[str, str, tuple[tuple[str, str], ...]]
Operation = Callable[[Account], Reply]
T = TypeVar("T")


@dataclass(frozen=True)
class Saved:
    """A response stored under an idempotency key."""

    fingerprint: Fingerprint
    status: int
    body: bytes


class Store:
    """One Stripe test-mode account held in memory; every operation runs under one lock."""

    def __init__(self, injector: FaultInjector, bus: EventBus) -> None:
        self._lock = threading.Lock()
        self._injector, self._bus = injector, bus
        self.reset()

    def reset(self) -> None:
        """Forget every object, timer and idempotency key."""
        with self._lock:
            self.account = Account(self._injector, self._bus)
            self.saved: dict[tuple[str, str], Saved] = {}

    def execute(
        self, api_key: str, idem_key: str | None, fingerprint: Fingerprint, op: Operation
    ) -> tuple[int, bytes, bool]:
        """Run `op` atomically, honouring Idempotency-Key; returns (status, body, replayed)."""
        with self._lock:
            settle_due(self.account)  # reads see settled state even between two ticks
            saved = self.saved.get((api_key, idem_key)) if idem_key else None
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    msg = (
                        f"Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{idem_key}' if you meant to execute a different "
                        f"request."
                    )
                    return 400, json.dumps(error_body("idempotency_error", msg)).encode(), False
                return saved.status, saved.body, True
            save = True
            try:
                status, body = op(self.account)
            except ApiFailure as failure:
                (status, body), save = failure.reply, failure.saved
            data = json.dumps(body).encode()  # snapshot now: later changes must not leak into a replay
            if idem_key and save:
                self.saved[(api_key, idem_key)] = Saved(fingerprint, status, data)
            return status, data, False

    def control(self, op: Operation) -> tuple[int, Json]:
        """Run a dashboard operation atomically (no idempotency); Stripe errors come back as (status, body)."""
        with self._lock:
            settle_due(self.account)
            try:
                status, body = op(self.account)
            except ApiFailure as failure:
                status, body = failure.reply
            return status, json.loads(json.dumps(body))

    def read(self, view: Callable[[Account], T]) -> T:
        """Look at the account atomically, after settling what is due."""
        with self._lock:
            settle_due(self.account)
            return view(self.account)

    def tick(self) -> None:
        """Settle what is due now (called by the background ticker)."""
        with self._lock:
            settle_due(self.account)

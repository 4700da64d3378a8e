"""Time-based settling: processing PaymentIntents and pending refunds end on their own, read or not."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .account import Account
from .intents import settle_intent
from .refunds import settle_refund

TICK_S = 0.05


def settle_due(acct: Account) -> None:
    """Settle every object whose timer is due, earliest first, emitting its events."""
    for object_id, outcome in acct.due():
        settle = settle_refund if object_id.startswith("re_") else settle_intent
        settle(acct, object_id, outcome)


class Ticker:
    """A background thread that calls `tick` every TICK_S seconds until stopped."""

    def __init__(self, tick: Callable[[], None], every_s: float = TICK_S) -> None:
        self._tick, self._every_s = tick, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start ticking."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fake-stripe-ticker", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 2.0) -> None:
        """Stop ticking and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._tick()

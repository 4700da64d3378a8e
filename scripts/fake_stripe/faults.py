"""Fault injection and behaviour knobs for the fake Stripe server: seeded, so a test sees the same run every time."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from scripts.devstack.loopback import KnobSet, SeededDraws


@dataclass(frozen=True)
class Faults(KnobSet):
    """What goes wrong, how often and how late (rates are fractions 0..1; every default is today's plain Stripe)."""

    ENV_PREFIX: ClassVar[str] = "FAKE_STRIPE_"
    INTEGERS: ClassVar[frozenset[str]] = frozenset({"latency_ms", "seed", "webhook_max_attempts"})

    # Per /v1 request, answered before (500, 429) or after (timeout) the endpoint runs.
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_ms: int = 0
    timeout_delay_s: float = 30.0
    seed: int = 0
    # Search sees each PaymentIntent as it was this long ago (eventual consistency).
    search_lag_s: float = 0.0
    # Confirmations with a succeeding card: some answer `processing` (settling later) or `requires_action`.
    processing_rate: float = 0.0
    processing_delay_s: float = 2.0
    processing_failure_rate: float = 0.0
    requires_action_rate: float = 0.0
    # New refunds: some start `pending`, and of those some end `failed`.
    refund_pending_rate: float = 0.0
    refund_settle_s: float = 2.0
    refund_failure_rate: float = 0.0
    # Webhook delivery: first tries late by up to webhook_delay_s, retries with exponential backoff.
    webhook_delay_s: float = 0.0
    webhook_retry_base_s: float = 0.5
    webhook_max_attempts: int = 10

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.rate_limit_rate, self.timeout_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        confirming = (self.processing_rate, self.requires_action_rate)
        if min(confirming) < 0 or sum(confirming) > 1:
            raise ValueError("processing_rate and requires_action_rate must be >= 0 and add up to at most 1")
        for name in ("processing_failure_rate", "refund_pending_rate", "refund_failure_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        durations = ("timeout_delay_s", "search_lag_s", "processing_delay_s", "refund_settle_s", "webhook_delay_s")
        if self.latency_ms < 0 or any(getattr(self, name) < 0 for name in durations):
            raise ValueError(f"latency_ms and {', '.join(durations)} must be >= 0")
        if self.webhook_retry_base_s < 0 or self.webhook_max_attempts < 1:
            raise ValueError("webhook_retry_base_s must be >= 0 and webhook_max_attempts >= 1")


class Fault(Enum):
    """The fault drawn for one request."""

    NONE = "none"
    SERVER_ERROR = "server_error"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"


class FaultInjector:
    """Holds the current Faults and two seeded random streams: one draw per /v1 request, and behaviour draws."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._draws = SeededDraws(0)
        self.configure(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The settings in force."""
        return self._faults

    def configure(self, faults: Faults) -> None:
        """Replace the settings and restart both random streams from their seed."""
        with self._lock:
            self._faults = faults
            self._draws.restart(faults.seed)
            self._behaviour = random.Random(f"behaviour:{faults.seed}")

    def draw(self) -> Fault:
        """Pick the fault for the next request: server error, then rate limit, then timeout bands."""
        f = self._faults
        bands = [
            (Fault.SERVER_ERROR, f.error_rate),
            (Fault.RATE_LIMIT, f.rate_limit_rate),
            (Fault.TIMEOUT, f.timeout_rate),
        ]
        return self._draws.pick(bands, Fault.NONE)

    def roll(self) -> float:
        """A behaviour draw in [0, 1) (kept apart from the request faults, so knobs do not shift their pattern)."""
        with self._lock:
            return self._behaviour.random()

    def chance(self, rate: float) -> bool:
        """True with probability `rate`; a rate of 0 or 1 decides without drawing."""
        if rate <= 0 or rate >= 1:
            return rate >= 1
        return self.roll() < rate

    def uniform(self, high: float) -> float:
        """A behaviour draw in [0, high]; 0 without drawing when `high` is 0."""
        return self.roll() * high if high > 0 else 0.0

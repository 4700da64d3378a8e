"""Fault injection and behaviour knobs for the fake Stripe server: seeded, so a test sees the same run every time."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

_INTEGERS = frozenset({"latency_ms", "seed", "webhook_max_attempts"})


@dataclass(frozen=True)
class Faults:
    """What goes wrong, how often and how late (rates are fractions 0..1; every default is today's plain Stripe)."""

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

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Faults | None = None) -> Faults:
        """Build from a JSON-ish mapping; unknown keys are an error, missing ones keep `base`'s value."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        updates: dict[str, Any] = {k: int(v) if k in _INTEGERS else float(v) for k, v in values.items()}
        return replace(base or cls(), **updates)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Faults:
        """Read the FAKE_STRIPE_<NAME> variables (unset or empty ones keep their defaults)."""
        return cls.from_mapping({name: environ[env] for name, env in ENV_NAMES.items() if environ.get(env)})

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return asdict(self)


ENV_NAMES = {f.name: f"FAKE_STRIPE_{f.name.upper()}" for f in fields(Faults)}


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
        self.configure(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The settings in force."""
        return self._faults

    def configure(self, faults: Faults) -> None:
        """Replace the settings and restart both random streams from their seed."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._behaviour = random.Random(f"behaviour:{faults.seed}")

    def draw(self) -> Fault:
        """Pick the fault for the next request: server error, then rate limit, then timeout bands."""
        with self._lock:
            f = self._faults
            if not (f.error_rate or f.rate_limit_rate or f.timeout_rate):
                return Fault.NONE
            r = self._rng.random()
        if r < f.error_rate:
            return Fault.SERVER_ERROR
        if r < f.error_rate + f.rate_limit_rate:
            return Fault.RATE_LIMIT
        if r < f.error_rate + f.rate_limit_rate + f.timeout_rate:
            return Fault.TIMEOUT
        return Fault.NONE

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

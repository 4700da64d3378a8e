"""Fault injection for the fake Stripe server: seeded, so a test sees the same faults on every run."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

ENV_NAMES = {
    "error_rate": "FAKE_STRIPE_ERROR_RATE",
    "rate_limit_rate": "FAKE_STRIPE_RATE_LIMIT_RATE",
    "timeout_rate": "FAKE_STRIPE_TIMEOUT_RATE",
    "latency_ms": "FAKE_STRIPE_LATENCY_MS",
    "timeout_delay_s": "FAKE_STRIPE_TIMEOUT_DELAY_S",
    "seed": "FAKE_STRIPE_SEED",
}


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often, on /v1 requests (rates are fractions of requests, 0..1)."""

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_ms: int = 0
    timeout_delay_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.rate_limit_rate, self.timeout_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        if self.latency_ms < 0 or self.timeout_delay_s < 0:
            raise ValueError("latency_ms and timeout_delay_s must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Faults | None = None) -> Faults:
        """Build from a JSON-ish mapping; unknown keys are an error, missing ones keep `base`'s value."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        updates: dict[str, Any] = {k: int(v) if k in ("latency_ms", "seed") else float(v) for k, v in values.items()}
        return replace(base or cls(), **updates)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Faults:
        """Read the FAKE_STRIPE_* variables (unset or empty ones keep their defaults)."""
        return cls.from_mapping({name: environ[env] for name, env in ENV_NAMES.items() if environ.get(env)})

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return asdict(self)


class Fault(Enum):
    """The fault drawn for one request."""

    NONE = "none"
    SERVER_ERROR = "server_error"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"


class FaultInjector:
    """Holds the current Faults and a seeded random stream; one draw per /v1 request."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The settings in force."""
        return self._faults

    def configure(self, faults: Faults) -> None:
        """Replace the settings and restart the random stream from their seed."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

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

"""Fault injection for the fake carrier: seeded, so a test sees the same faults on every run."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

ENV_PREFIX = "FAKE_CARRIER_"
_INTEGERS = ("latency_ms", "seed")


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often, on /v1 requests (rates are fractions of requests, 0..1)."""

    error_rate: float = 0.0
    lost_answer_rate: float = 0.0
    latency_ms: int = 0
    timeout_delay_s: float = 30.0
    pickup_delay_s: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.lost_answer_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        if self.latency_ms < 0 or self.timeout_delay_s < 0 or self.pickup_delay_s < 0:
            raise ValueError("latency_ms, timeout_delay_s and pickup_delay_s must be >= 0")

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
        """Read the FAKE_CARRIER_<SETTING> variables (unset or empty ones keep their defaults)."""
        names = [f.name for f in fields(cls)]
        return cls.from_mapping(
            {n: environ[ENV_PREFIX + n.upper()] for n in names if environ.get(ENV_PREFIX + n.upper())}
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return asdict(self)


class Fault(Enum):
    """The fault drawn for one request."""

    NONE = "none"
    SERVER_ERROR = "server_error"
    LOST_ANSWER = "lost_answer"


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
        """Pick the fault for the next request: server error, then lost answer bands."""
        with self._lock:
            f = self._faults
            if not (f.error_rate or f.lost_answer_rate):
                return Fault.NONE
            r = self._rng.random()
        if r < f.error_rate:
            return Fault.SERVER_ERROR
        if r < f.error_rate + f.lost_answer_rate:
            return Fault.LOST_ANSWER
        return Fault.NONE

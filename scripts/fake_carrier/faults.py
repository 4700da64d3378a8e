"""Fault injection for the fake carrier: seeded, so a test sees the same faults on every run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from scripts.devstack.loopback import KnobSet, SeededDraws


@dataclass(frozen=True)
class Faults(KnobSet):
    """What goes wrong, and how often, on /v1 requests (rates are fractions of requests, 0..1)."""

    ENV_PREFIX: ClassVar[str] = "FAKE_CARRIER_"

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


class Fault(Enum):
    """The fault drawn for one request."""

    NONE = "none"
    SERVER_ERROR = "server_error"
    LOST_ANSWER = "lost_answer"


class FaultInjector:
    """Holds the current Faults and a seeded random stream; one draw per /v1 request."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._faults = faults or Faults()
        self._draws = SeededDraws(self._faults.seed)

    @property
    def faults(self) -> Faults:
        """The settings in force."""
        return self._faults

    def configure(self, faults: Faults) -> None:
        """Replace the settings and restart the random stream from their seed."""
        self._faults = faults
        self._draws.restart(faults.seed)

    def draw(self) -> Fault:
        """Pick the fault for the next request: server error, then lost answer bands."""
        f = self._faults
        return self._draws.pick(
            [(Fault.SERVER_ERROR, f.error_rate), (Fault.LOST_ANSWER, f.lost_answer_rate)], Fault.NONE
        )

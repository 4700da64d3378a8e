"""When to add or remove a worker process: a pure function of recent backlog samples. No I/O.

Up when the work waiting per worker, or the age of the oldest ready message, stayed above its
threshold for `sustain_up_s`; down when the work would still fit comfortably in one worker fewer
for `sustain_down_s`. The gap between the two thresholds (hysteresis) and the cooldown after every
change keep the pool from flapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["up", "down", "hold"]


@dataclass(frozen=True)
class Policy:
    """Bounds and thresholds of the autoscaler."""

    min_workers: int
    max_workers: int
    up_backlog: float  # messages waiting per worker above which one more is needed
    down_backlog: float  # messages per worker, counted as if one worker fewer ran, below which one can go
    up_age_s: float  # oldest ready message older than this: the workers do not keep up
    sustain_up_s: float
    sustain_down_s: float
    cooldown_s: float

    def __post_init__(self) -> None:
        if not 0 < self.min_workers <= self.max_workers:
            raise ValueError(f"need 0 < min <= max workers, got {self.min_workers} and {self.max_workers}")
        if not 0 <= self.down_backlog < self.up_backlog:
            raise ValueError("the down threshold must be below the up threshold, or the pool flaps")


@dataclass(frozen=True)
class Sample:
    """One reading of the queues: when (monotonic seconds), work waiting, and the oldest ready message's age."""

    at: float
    waiting: int  # ready + in flight: the messages more workers would take on (delayed ones wait for their eta)
    oldest_age_s: float | None


@dataclass(frozen=True)
class Decision:
    """How many workers should run, and why."""

    desired: int
    action: Action
    reason: str


def decide(samples: Sequence[Sample], workers: int, since_change_s: float, policy: Policy) -> Decision:
    """The worker count to run given recent samples (oldest first), the current count and the last change."""
    bounded = min(max(workers, policy.min_workers), policy.max_workers)
    if bounded != workers:
        action: Action = "up" if bounded > workers else "down"
        return Decision(bounded, action, f"outside the bounds {policy.min_workers}..{policy.max_workers}")
    if not samples:
        return Decision(workers, "hold", "no backlog reading yet")
    if since_change_s < policy.cooldown_s:
        return Decision(workers, "hold", f"cooldown: last change {since_change_s:.1f}s ago")
    latest = samples[-1]
    if workers < policy.max_workers and _held(samples, policy.sustain_up_s, lambda s: _high(s, workers, policy)):
        needed = math.ceil(latest.waiting / policy.up_backlog)
        desired = min(policy.max_workers, max(workers + 1, needed))
        return Decision(desired, "up", _why_up(latest, workers, policy))
    if workers > policy.min_workers and _held(samples, policy.sustain_down_s, lambda s: _low(s, workers, policy)):
        return Decision(
            workers - 1,
            "down",
            f"{latest.waiting} waiting would be {latest.waiting / (workers - 1):.1f} per worker with one fewer, "
            f"below {policy.down_backlog:g}, for {policy.sustain_down_s:g}s",
        )
    return Decision(workers, "hold", "within thresholds")


def _high(sample: Sample, workers: int, policy: Policy) -> bool:
    return sample.waiting / workers > policy.up_backlog or (sample.oldest_age_s or 0) > policy.up_age_s


def _low(sample: Sample, workers: int, policy: Policy) -> bool:
    return sample.waiting / (workers - 1) < policy.down_backlog and (sample.oldest_age_s or 0) < policy.up_age_s


def _held(samples: Sequence[Sample], seconds: float, condition: Callable[[Sample], bool]) -> bool:
    """True when every sample of the last `seconds` met the condition, and they do cover that long."""
    since = None
    for sample in reversed(samples):
        if not condition(sample):
            break
        since = sample.at
    return since is not None and samples[-1].at - since >= seconds


def _why_up(latest: Sample, workers: int, policy: Policy) -> str:
    per_worker, sustained = latest.waiting / workers, f"{policy.sustain_up_s:g}s"
    if per_worker > policy.up_backlog:
        return f"{latest.waiting} waiting, {per_worker:.1f} per worker > {policy.up_backlog:g}, for {sustained}"
    return f"oldest ready message {latest.oldest_age_s:.1f}s old > {policy.up_age_s:g}s, for {sustained}"


@dataclass
class Scaler:
    """The policy with its memory: the count it wants, recent samples, and when it last changed its mind."""

    policy: Policy
    workers: int
    changed_at: float = -math.inf  # no cooldown at start-up
    samples: list[Sample] = field(default_factory=list)

    def observe(self, sample: Sample) -> Decision:
        """Take one reading and return the decision; the count changes with every up or down."""
        horizon = 2 * max(self.policy.sustain_up_s, self.policy.sustain_down_s)
        self.samples = [*(s for s in self.samples if s.at >= sample.at - horizon), sample]
        decision = decide(self.samples, self.workers, sample.at - self.changed_at, self.policy)
        if decision.desired != self.workers:
            self.workers, self.changed_at = decision.desired, sample.at
        return decision

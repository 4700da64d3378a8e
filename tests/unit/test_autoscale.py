"""The autoscaler's decisions: up under sustained backlog, not on a blip, with hysteresis, cooldown and bounds."""

from __future__ import annotations

import pytest

from workers.autoscale.policy import Policy, Sample, Scaler, decide

POLICY = Policy(
    min_workers=1,
    max_workers=4,
    up_backlog=16,
    down_backlog=4,
    up_age_s=10,
    sustain_up_s=5,
    sustain_down_s=10,
    cooldown_s=30,
)


def readings(*waiting: int, every_s: float = 1.0, age_s: float | None = None) -> list[Sample]:
    return [Sample(at=n * every_s, waiting=w, oldest_age_s=age_s) for n, w in enumerate(waiting)]


def test_a_backlog_held_above_the_threshold_for_the_sustain_time_adds_a_worker() -> None:
    samples = readings(*[40] * 6)  # 40 waiting for 1 worker, over 5 s

    decision = decide(samples, workers=1, since_change_s=60, policy=POLICY)

    assert (decision.desired, decision.action) == (3, "up"), "enough workers to get under 16 each: ceil(40 / 16)"
    assert "40 waiting" in decision.reason


def test_a_backlog_not_yet_held_for_the_sustain_time_adds_nothing() -> None:
    samples = readings(*[40] * 5)  # 4 s only

    assert decide(samples, workers=1, since_change_s=60, policy=POLICY).action == "hold"


def test_a_blip_in_an_otherwise_quiet_queue_adds_nothing() -> None:
    samples = readings(2, 3, 2, 500, 2, 3, 1, 2)

    assert decide(samples, workers=1, since_change_s=60, policy=POLICY).action == "hold"


def test_a_spike_that_just_ended_adds_nothing() -> None:
    samples = readings(*[500] * 8, 3)

    assert decide(samples, workers=1, since_change_s=60, policy=POLICY).action == "hold"


def test_an_old_ready_message_adds_a_worker_even_with_a_short_queue() -> None:
    samples = readings(*[3] * 6, age_s=25.0)

    decision = decide(samples, workers=2, since_change_s=60, policy=POLICY)

    assert (decision.desired, decision.action) == (3, "up")
    assert "oldest ready message 25.0s old" in decision.reason


def test_scaling_up_stops_at_the_maximum() -> None:
    samples = readings(*[10_000] * 6)

    assert decide(samples, workers=2, since_change_s=60, policy=POLICY).desired == 4
    assert decide(samples, workers=4, since_change_s=60, policy=POLICY).action == "hold"


def test_a_quiet_queue_held_for_the_sustain_time_removes_one_worker_at_a_time() -> None:
    samples = readings(*[0] * 11)

    decision = decide(samples, workers=4, since_change_s=60, policy=POLICY)

    assert (decision.desired, decision.action) == (3, "down")


def test_scaling_down_stops_at_the_minimum() -> None:
    samples = readings(*[0] * 11)

    assert decide(samples, workers=1, since_change_s=60, policy=POLICY).action == "hold"


def test_a_backlog_between_the_thresholds_keeps_the_count_either_way() -> None:
    # 3 workers, 30 waiting: 10 each is below 16 (no up), and 15 each with one fewer is above 4 (no down).
    samples = readings(*[30] * 20)

    assert decide(samples, workers=3, since_change_s=60, policy=POLICY).action == "hold"


def test_the_down_threshold_counts_the_backlog_as_if_one_worker_fewer_ran() -> None:
    # 2 workers, 6 waiting: 3 each now, but 6 for the one that would remain, above 4: keep both.
    samples = readings(*[6] * 20)

    assert decide(samples, workers=2, since_change_s=60, policy=POLICY).action == "hold"


def test_nothing_changes_during_the_cooldown() -> None:
    busy, quiet = readings(*[500] * 10), readings(*[0] * 20)

    assert decide(busy, workers=2, since_change_s=29, policy=POLICY).action == "hold"
    assert decide(quiet, workers=2, since_change_s=29, policy=POLICY).reason.startswith("cooldown")
    assert decide(busy, workers=2, since_change_s=30, policy=POLICY).action == "up"


def test_a_count_outside_the_bounds_is_brought_back_at_once() -> None:
    assert decide([], workers=0, since_change_s=0, policy=POLICY).desired == 1
    assert decide([], workers=9, since_change_s=0, policy=POLICY).desired == 4


def test_thresholds_without_a_gap_between_them_are_refused() -> None:
    with pytest.raises(ValueError, match="below the up threshold"):
        Policy(1, 4, up_backlog=8, down_backlog=8, up_age_s=10, sustain_up_s=5, sustain_down_s=10, cooldown_s=30)
    with pytest.raises(ValueError, match="min <= max"):
        Policy(3, 2, up_backlog=8, down_backlog=2, up_age_s=10, sustain_up_s=5, sustain_down_s=10, cooldown_s=30)


def test_a_scaler_goes_up_under_load_then_back_down_one_step_per_cooldown_once_the_queue_is_empty() -> None:
    scaler = Scaler(POLICY, workers=1)
    counts = []
    for second in range(200):
        waiting = 100 if second < 40 else 0
        scaler.observe(Sample(at=float(second), waiting=waiting, oldest_age_s=None))
        counts.append(scaler.workers)

    assert counts[4] == 1 and counts[5] == 4, "up after 5 s of backlog, to what the backlog needs (capped)"
    assert max(counts[5:40]) == 4
    downs = [second for second in range(1, 200) if counts[second] < counts[second - 1]]
    assert [counts[second] for second in downs] == [3, 2, 1], "one worker at a time, down to the minimum"
    assert all(later - earlier >= POLICY.cooldown_s for earlier, later in zip(downs, downs[1:], strict=False))
    assert downs[0] >= 40 + POLICY.sustain_down_s

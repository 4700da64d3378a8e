"""The order state machine: what may follow what, and which statuses are the end of the road."""

from __future__ import annotations

import itertools

import pytest

from models.status import TERMINAL_STATUSES, OrderStatus
from pipeline.errors import IllegalTransition
from pipeline.states import TRANSITIONS, check_transition, is_terminal

S = OrderStatus
ALLOWED = sorted((before, after) for before, afters in TRANSITIONS.items() for after in afters)
ILLEGAL = [(before, after) for before, after in itertools.product(S, S) if after not in TRANSITIONS[before]]
TERMINAL = {S.SHIPPED, S.CANCELLED, S.NEEDS_ATTENTION}


def test_the_table_covers_every_status() -> None:
    statuses = set(TRANSITIONS)

    assert statuses == set(S)


def test_the_forward_path_runs_from_pending_to_shipped() -> None:
    path = [S.PENDING, S.RESERVED, S.PAID, S.CONFIRMED, S.NOTIFIED, S.SHIPPED]

    steps = list(itertools.pairwise(path))

    assert all(after in TRANSITIONS[before] for before, after in steps)


@pytest.mark.parametrize(("before", "after"), ALLOWED)
def test_every_allowed_transition_passes_and_returns_the_new_status(before: S, after: S) -> None:
    new = check_transition(before, after)

    assert new == after
    assert isinstance(new, OrderStatus)


@pytest.mark.parametrize(("before", "after"), ALLOWED[:3])
def test_a_transition_given_as_plain_strings_passes_too(before: S, after: S) -> None:
    new = check_transition(before.value, after.value)

    assert new is after


@pytest.mark.parametrize(("before", "after"), ILLEGAL)
def test_every_transition_not_in_the_table_raises_illegal_transition(before: S, after: S) -> None:
    with pytest.raises(IllegalTransition) as raised:
        check_transition(before, after)

    assert raised.value.code == "ILLEGAL_TRANSITION"
    assert raised.value.details == {"current": before, "new": after}


def test_no_status_may_follow_itself() -> None:
    loops = [status for status in S if status in TRANSITIONS[status]]

    assert loops == []


def test_an_unknown_status_is_refused_as_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_transition("pending", "teleported")


@pytest.mark.parametrize("status", list(S))
def test_shipped_cancelled_and_needs_attention_are_the_terminal_statuses(status: S) -> None:
    terminal = is_terminal(status)

    assert terminal is (status in TERMINAL)
    assert is_terminal(status.value) is terminal


def test_the_terminal_statuses_agree_with_the_ones_the_database_knows() -> None:
    terminal = {status for status in S if is_terminal(status)}

    assert terminal == set(TERMINAL_STATUSES)


def test_shipped_has_no_way_out() -> None:
    way_out = TRANSITIONS[S.SHIPPED]

    assert way_out == frozenset()


def test_a_cancelled_order_moves_only_when_the_provider_took_money_after_the_cancel() -> None:
    # A late success is refunded through the compensation again; a refund failing after the cancel needs a person.
    way_out = TRANSITIONS[S.CANCELLED]

    assert way_out == frozenset({S.COMPENSATING, S.NEEDS_ATTENTION})


def test_an_order_that_needs_attention_goes_back_to_compensating_or_resumes_where_it_was_held() -> None:
    way_out = TRANSITIONS[S.NEEDS_ATTENTION]

    assert way_out == frozenset({S.COMPENSATING, S.PAID, S.CONFIRMED, S.NOTIFIED})


@pytest.mark.parametrize("status", [S.PAID, S.CONFIRMED, S.NOTIFIED])
def test_a_charged_order_before_shipment_can_be_held_for_an_operator(status: S) -> None:
    assert S.NEEDS_ATTENTION in TRANSITIONS[status]


@pytest.mark.parametrize("status", [status for status in S if not is_terminal(status)])
def test_every_live_status_can_reach_compensating_so_anything_unshipped_can_be_cancelled(status: S) -> None:
    reachable = status == S.COMPENSATING or S.COMPENSATING in TRANSITIONS[status]

    assert reachable


def test_compensating_ends_in_cancelled_needs_attention_or_shipped_when_the_parcel_had_left() -> None:
    way_out = TRANSITIONS[S.COMPENSATING]

    assert way_out == frozenset({S.CANCELLED, S.NEEDS_ATTENTION, S.SHIPPED})

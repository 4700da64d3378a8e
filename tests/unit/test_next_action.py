"""The saga's one decision as a table: (status, current step, event) -> what happens next, and where it can lead."""

from __future__ import annotations

import pytest

from models.status import TERMINAL_STATUSES, OrderStatus
from pipeline import saga
from pipeline.saga import (
    CancelRequested,
    Compensate,
    Finish,
    GaveUp,
    Ignore,
    OperatorRetry,
    Park,
    Refuse,
    ReservationExpired,
    Send,
    Stalled,
    StepFailed,
    StepSucceeded,
    UndoFailed,
    UndoSucceeded,
)
from pipeline.states import check_transition

S = OrderStatus
ALL_UNDOS = ("cancel_shipment", "send_cancellation", "unconfirm", "refund_payment", "release_stock")
CHARGE_PLAN = ("refund_payment", "release_stock")
DOUBLE_CHARGE = "earlier charge_payment attempts but no payment record: re-charging could double charge"

TABLE = [
    # A step ran: the order moves to the step's status and the next step is sent; the last one finishes.
    pytest.param(S.PENDING, "reserve_stock", StepSucceeded("reserve_stock"), Send("charge_payment", S.RESERVED),
                 id="a reserved order is sent to be charged"),
    pytest.param(S.RESERVED, "charge_payment", StepSucceeded("charge_payment"), Send("confirm", S.PAID),
                 id="a paid order is sent to be confirmed"),
    pytest.param(S.NOTIFIED, "ship", StepSucceeded("ship"), Finish(S.SHIPPED),
                 id="the last step finishes the order as shipped"),
    # A redelivered step: its follow-up goes again only if the order is exactly at this step's status.
    pytest.param(S.RESERVED, "charge_payment", StepSucceeded("reserve_stock"),
                 Ignore("reserve_stock is not due in reserved", resend="charge_payment"),
                 id="a step redelivered just after it finished resends its follow-up"),
    pytest.param(S.PAID, "confirm", StepSucceeded("reserve_stock"), Ignore("reserve_stock is not due in paid"),
                 id="a step redelivered after the order moved further on sends nothing"),
    pytest.param(S.SHIPPED, None, StepSucceeded("ship"), Ignore("ship is not due in shipped"),
                 id="the last step redelivered sends nothing"),
    pytest.param(S.COMPENSATING, "release_stock", StepSucceeded("charge_payment"),
                 Ignore("charge_payment is not due in compensating"),
                 id="a step overtaken by a cancel does nothing"),
    # A step failed for good: undo it and every step before it, newest first, or hold the order for a person.
    pytest.param(S.RESERVED, "charge_payment", StepFailed("charge_payment"),
                 Compensate(CHARGE_PLAN, failed="charge_payment"),
                 id="a failed charge is refunded in case its answer was lost, then the stock released"),
    pytest.param(S.PENDING, "reserve_stock", StepFailed("reserve_stock"),
                 Compensate(("release_stock",), failed="reserve_stock"),
                 id="a failed reservation releases whatever it held"),
    pytest.param(S.PAID, "confirm", StepFailed("confirm", parks=True), Park("confirm", held=True),
                 id="a disputed charge holds the order at its step and undoes nothing"),
    pytest.param(S.COMPENSATING, "refund_payment", StepFailed("charge_payment"),
                 Ignore("charge_payment is not due in compensating"),
                 id="a duplicate failure of a step already compensating starts nothing"),
    pytest.param(S.CANCELLED, None, StepFailed("confirm", parks=True), Ignore("confirm is not due in cancelled"),
                 id="a hold of an order someone moved on does nothing"),
    # An undo ran: the next undo is sent, and the last one cancels the order.
    pytest.param(S.COMPENSATING, "refund_payment", UndoSucceeded("refund_payment"), Send("release_stock"),
                 id="an undo sends the next undo"),
    pytest.param(S.COMPENSATING, "release_stock", UndoSucceeded("release_stock"), Finish(S.CANCELLED),
                 id="the last undo cancels the order"),
    pytest.param(S.COMPENSATING, "release_stock", UndoSucceeded("refund_payment"), Ignore("refund_payment is not due"),
                 id="an undo redelivered after the next one started does nothing"),
    pytest.param(S.CANCELLED, None, UndoSucceeded("release_stock"), Ignore("release_stock is not due"),
                 id="an undo redelivered after the cancel does nothing"),
    # An undo that cannot finish parks the order for a person.
    pytest.param(S.COMPENSATING, "refund_payment", UndoFailed("refund_payment"), Park("refund_payment"),
                 id="a failed undo parks the order at that undo"),
    pytest.param(S.NEEDS_ATTENTION, "refund_payment", UndoFailed("refund_payment"), Ignore("refund_payment is not due"),
                 id="a failed undo of an order already parked does nothing"),
    # Retries or re-drives ran out: a step has failed for good, an undo needs a person.
    pytest.param(S.CONFIRMED, "notify", GaveUp("notify"), Compensate(ALL_UNDOS[1:], failed="notify"),
                 id="giving up on a step compensates it"),
    pytest.param(S.COMPENSATING, "refund_payment", GaveUp("refund_payment"), Park("refund_payment"),
                 id="giving up on an undo parks the order"),
    pytest.param(S.PAID, "confirm", GaveUp("notify"), Ignore("notify is not due in paid"),
                 id="giving up on a step that is not due does nothing"),
    # The reaper re-drives what is due: the leased step, else the step the status waits for.
    pytest.param(S.RESERVED, "charge_payment", Stalled(), Send("charge_payment"),
                 id="a stalled step is sent again"),
    pytest.param(S.RESERVED, None, Stalled(), Send("charge_payment"),
                 id="a stalled order with no step leased is sent the step its status waits for"),
    pytest.param(S.COMPENSATING, "refund_payment", Stalled(), Send("refund_payment"),
                 id="a stalled undo is sent again"),
    pytest.param(S.COMPENSATING, None, Stalled(), Ignore("nothing is due in compensating"),
                 id="a compensating order with no undo leased has nothing to re-drive"),
    pytest.param(S.NEEDS_ATTENTION, "refund_payment", Stalled(), Ignore("nothing is due in needs_attention"),
                 id="a parked order is left to a person"),
    pytest.param(S.SHIPPED, None, Stalled(), Ignore("nothing is due in shipped"),
                 id="a finished order has nothing to re-drive"),
    # Stock held too long: the charge step's own failure path, only while the charge is due.
    pytest.param(S.RESERVED, "charge_payment", ReservationExpired(), Compensate(CHARGE_PLAN, failed="charge_payment"),
                 id="an expired reservation fails the charge, refunding one whose answer was lost"),
    pytest.param(S.PAID, "confirm", ReservationExpired(), Ignore("charge_payment is not due in paid"),
                 id="an expired reservation of an order charged meanwhile is left alone"),
    # An operator's retry.
    pytest.param(S.NEEDS_ATTENTION, "confirm", OperatorRetry(), Send("confirm", S.PAID),
                 id="a held order resumes before the step that held it"),
    pytest.param(S.NEEDS_ATTENTION, "refund_payment", OperatorRetry(), Send("refund_payment", S.COMPENSATING),
                 id="a parked compensation runs its undo again"),
    pytest.param(S.NEEDS_ATTENTION, None, OperatorRetry(), Send("cancel_shipment", S.COMPENSATING),
                 id="a parked order with no undo recorded runs every undo from the newest"),
    pytest.param(S.SHIPPED, None, OperatorRetry(), Refuse("order is shipped: nothing to re-drive"),
                 id="a shipped order is not re-driven"),
    pytest.param(S.CANCELLED, None, OperatorRetry(), Refuse("order is cancelled: nothing to re-drive"),
                 id="a cancelled order is not re-driven"),
    pytest.param(S.COMPENSATING, None, OperatorRetry(), Refuse("no step is due in status compensating"),
                 id="a compensating order with no undo leased is not re-driven"),
    pytest.param(S.COMPENSATING, "release_stock", OperatorRetry(), Send("release_stock"),
                 id="a compensating order is sent its leased undo"),
    pytest.param(S.RESERVED, None, OperatorRetry(), Send("charge_payment"),
                 id="a live order is sent the step its status waits for"),
    pytest.param(S.RESERVED, "charge_payment", OperatorRetry(charged_without_ledger=True), Refuse(DOUBLE_CHARGE),
                 id="a charge attempted without a payment record is not retried"),
    pytest.param(S.PAID, "confirm", OperatorRetry(charged_without_ledger=True), Send("confirm"),
                 id="a missing payment record stops only a retry of the charge"),
    # A cancel: undo what the order did; a shipped order cannot be cancelled, a repeat changes nothing.
    pytest.param(S.PENDING, "reserve_stock", CancelRequested(), Compensate(("release_stock",)),
                 id="a pending order is cancelled by releasing whatever stock it may hold"),
    pytest.param(S.NOTIFIED, "ship", CancelRequested(), Compensate(ALL_UNDOS),
                 id="a notified order is cancelled by every undo including the shipment's"),
    pytest.param(S.SHIPPED, None, CancelRequested(), Refuse("order has shipped and cannot be cancelled"),
                 id="a shipped order cannot be cancelled"),
    pytest.param(S.SHIPPED, None, CancelRequested(operator=True), Refuse("order has shipped and cannot be cancelled"),
                 id="a shipped order cannot be compensated by an operator either"),
    pytest.param(S.COMPENSATING, "refund_payment", CancelRequested(), Ignore("already compensating"),
                 id="a cancel of an order already compensating leaves it as it is"),
    pytest.param(S.CANCELLED, None, CancelRequested(operator=True), Ignore("already cancelled"),
                 id="a cancel of a cancelled order leaves it as it is"),
    pytest.param(S.NEEDS_ATTENTION, "refund_payment", CancelRequested(), Ignore("already needs_attention"),
                 id="a customer's cancel of a parked order leaves it as it is"),
    pytest.param(S.NEEDS_ATTENTION, "refund_payment", CancelRequested(operator=True),
                 Refuse("needs attention: `retry` re-runs its failed compensation"),
                 id="an operator is pointed from compensate to retry for a parked order"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "current_step", "event", "expected"), TABLE)
def test_next_action(status: OrderStatus, current_step: str | None, event: saga.Event, expected: saga.Decision) -> None:
    decision = saga.next_action(status, current_step, event)

    assert decision == expected


def _events() -> list[saga.Event]:
    steps, undos = [step.name for step in saga.STEPS], list(saga.UNDO_ORDER)
    # A dispute is found by the steps that check the charge, so only they hold an order.
    held = [StepFailed(step, parks=True) for step in ("confirm", "notify", "ship")]
    return [
        *(StepSucceeded(step) for step in steps), *(StepFailed(step) for step in steps), *held,
        *(UndoSucceeded(undo) for undo in undos), *(UndoFailed(undo) for undo in undos),
        *(GaveUp(actor) for actor in steps + undos), Stalled(), ReservationExpired(),
        OperatorRetry(), OperatorRetry(charged_without_ledger=True), CancelRequested(), CancelRequested(operator=True),
    ]  # fmt: skip


State = tuple[OrderStatus, str | None]


def _after(state: State, decision: saga.Decision) -> tuple[State, list[tuple[OrderStatus, OrderStatus]]]:
    """Where the decision leaves the order, and the status changes it makes on the way there."""
    status, _ = state
    match decision:
        case Send(actor, None):
            return (status, actor), []
        case Send(actor, OrderStatus() as new):
            return (new, actor), [(status, new)]
        case Compensate(plan) if plan:
            return (S.COMPENSATING, plan[0]), [(status, S.COMPENSATING)]
        case Compensate():
            return (S.CANCELLED, None), [(status, S.COMPENSATING), (S.COMPENSATING, S.CANCELLED)]
        case Finish(new):
            return (new, None), [(status, new)]
        case Park(actor):
            return (S.NEEDS_ATTENTION, actor), [(status, S.NEEDS_ATTENTION)]
    return state, []


def _explore() -> tuple[set[State], set[tuple[OrderStatus, OrderStatus]]]:
    """Every (status, current step) the saga's own decisions lead to from a new order, and every status change."""
    seen: set[State] = {(S.PENDING, saga.FIRST_STEP)}
    moves: set[tuple[OrderStatus, OrderStatus]] = set()
    todo = list(seen)
    while todo:
        state = todo.pop()
        for event in _events():
            after, changes = _after(state, saga.next_action(*state, event))
            moves.update(changes)
            if after not in seen:
                seen.add(after)
                todo.append(after)
    return seen, moves


_SEEN, _MOVES = _explore()
REACHABLE = sorted(_SEEN, key=str)
MOVES = sorted(_MOVES)


def test_every_status_is_reached_from_a_new_order() -> None:
    statuses = {status for status, _ in REACHABLE}

    assert statuses == set(S)


@pytest.mark.parametrize(("before", "after"), MOVES)
def test_every_status_change_the_saga_decides_is_allowed_by_the_state_machine(
    before: OrderStatus, after: OrderStatus
) -> None:
    allowed = check_transition(before, after)

    assert allowed == after


@pytest.mark.parametrize(("status", "current_step"), REACHABLE)
def test_every_live_order_the_saga_can_reach_has_something_for_the_reaper_to_re_drive(
    status: OrderStatus, current_step: str | None
) -> None:
    decision = saga.next_action(status, current_step, Stalled())

    assert isinstance(decision, Send) == (status not in TERMINAL_STATUSES)


@pytest.mark.parametrize(("status", "current_step"), REACHABLE)
def test_a_resent_follow_up_is_the_step_the_order_waits_for(status: OrderStatus, current_step: str | None) -> None:
    resent = {
        decision.resend
        for event in _events()
        if isinstance(decision := saga.next_action(status, current_step, event), Ignore) and decision.resend
    }

    assert resent <= {saga.step_due(status)}

"""The saga table and its pure helpers: order of steps, undo plans, redeliveries and queues."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.status import OrderStatus
from pipeline import saga

DESIGN_ORDER = ["reserve_stock", "charge_payment", "confirm", "notify", "ship"]
DESIGN_UNDO = {
    "reserve_stock": "release_stock",
    "charge_payment": "refund_payment",
    "confirm": "unconfirm",
    "notify": "send_cancellation",
    "ship": "cancel_shipment",
}
STEP_NAMES = [step.name for step in saga.STEPS]
FORWARD = [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.NOTIFIED]
NOT_ON_THE_FORWARD_PATH = [
    OrderStatus.SHIPPED,
    OrderStatus.COMPENSATING,
    OrderStatus.CANCELLED,
    OrderStatus.NEEDS_ATTENTION,
]


def test_the_steps_run_in_the_order_of_the_design() -> None:
    names = [step.name for step in saga.STEPS]

    assert names == DESIGN_ORDER
    assert saga.FIRST_STEP == "reserve_stock"


def test_every_step_has_the_undo_the_design_names_and_ship_voids_at_the_carrier() -> None:
    undos = {step.name: step.undo for step in saga.STEPS}

    assert undos == DESIGN_UNDO


def test_each_step_leaves_the_order_in_its_own_forward_status() -> None:
    done = [step.done for step in saga.STEPS]

    assert done == [
        OrderStatus.RESERVED,
        OrderStatus.PAID,
        OrderStatus.CONFIRMED,
        OrderStatus.NOTIFIED,
        OrderStatus.SHIPPED,
    ]


def test_the_undo_order_is_newest_first() -> None:
    order = saga.UNDO_ORDER

    assert order == ("cancel_shipment", "send_cancellation", "unconfirm", "refund_payment", "release_stock")


@pytest.mark.parametrize(
    ("failed", "plan"),
    [
        ("reserve_stock", ("release_stock",)),
        ("charge_payment", ("refund_payment", "release_stock")),
        ("confirm", ("unconfirm", "refund_payment", "release_stock")),
        ("notify", ("send_cancellation", "unconfirm", "refund_payment", "release_stock")),
        # A shipment whose answer was lost may exist at the carrier: it is voided before any money goes back.
        ("ship", ("cancel_shipment", "send_cancellation", "unconfirm", "refund_payment", "release_stock")),
    ],
)
def test_a_failed_step_undoes_itself_and_everything_before_it_newest_first(failed: str, plan: tuple[str, ...]) -> None:
    undos = saga.compensation_plan(failed)

    assert undos == plan


@pytest.mark.parametrize("failed", STEP_NAMES)
def test_every_plan_is_a_suffix_of_the_undo_order_that_undo_after_walks_to_the_end(failed: str) -> None:
    plan = saga.compensation_plan(failed)

    walked = [plan[0]]
    while (following := saga.undo_after(walked[-1])) is not None:
        walked.append(following)

    assert plan == saga.UNDO_ORDER[len(saga.UNDO_ORDER) - len(plan) :]
    assert tuple(walked) == plan


@pytest.mark.parametrize("name", STEP_NAMES)
def test_the_step_due_after_a_step_is_the_step_after_it(name: str) -> None:
    done = saga.BY_NAME[name].done

    due, after = saga.step_due(done), saga.step_after(name)

    assert due == after


@pytest.mark.parametrize("name", STEP_NAMES)
def test_a_step_is_due_exactly_in_the_status_it_needs(name: str) -> None:
    needed = saga.status_before(name)

    due = saga.step_due(needed)

    assert due == name


def test_walking_the_chain_from_pending_reaches_shipped_in_five_steps() -> None:
    status, walked = OrderStatus.PENDING, list[str]()

    while (due := saga.step_due(status)) is not None and len(walked) < 10:
        walked.append(due)
        status = saga.BY_NAME[due].done

    assert walked == DESIGN_ORDER
    assert status == OrderStatus.SHIPPED


@pytest.mark.parametrize("status", NOT_ON_THE_FORWARD_PATH)
def test_no_step_is_due_once_the_order_has_left_the_forward_path(status: OrderStatus) -> None:
    due = saga.step_due(status)

    assert due is None


@pytest.mark.parametrize(
    ("step", "status", "done"),
    [
        ("reserve_stock", OrderStatus.PAID, True),
        ("reserve_stock", OrderStatus.RESERVED, True),
        ("reserve_stock", OrderStatus.PENDING, False),
        ("reserve_stock", OrderStatus.COMPENSATING, False),
        ("reserve_stock", OrderStatus.CANCELLED, False),
        ("charge_payment", OrderStatus.RESERVED, False),
        ("charge_payment", OrderStatus.PAID, True),
        ("ship", OrderStatus.NOTIFIED, False),
        ("ship", OrderStatus.SHIPPED, True),
    ],
)
def test_a_redelivered_message_is_already_done_only_once_the_order_has_moved_past_its_step(
    step: str, status: OrderStatus, done: bool
) -> None:
    answer = saga.already_done(step, status)

    assert answer is done


@settings(database=None)
@given(step=st.sampled_from(STEP_NAMES), status=st.sampled_from(list(OrderStatus)))
def test_a_step_is_never_both_already_done_and_due(step: str, status: OrderStatus) -> None:
    done = saga.already_done(step, status)
    due = status == saga.status_before(step)

    assert not (done and due)


@pytest.mark.parametrize(
    ("status", "plan"),
    [
        (OrderStatus.PENDING, ("release_stock",)),
        (OrderStatus.RESERVED, ("refund_payment", "release_stock")),
        (OrderStatus.PAID, ("unconfirm", "refund_payment", "release_stock")),
        (OrderStatus.CONFIRMED, ("send_cancellation", "unconfirm", "refund_payment", "release_stock")),
        (
            OrderStatus.NOTIFIED,
            ("cancel_shipment", "send_cancellation", "unconfirm", "refund_payment", "release_stock"),
        ),
    ],
)
def test_a_cancel_undoes_the_due_step_and_everything_done_before_it(status: OrderStatus, plan: tuple[str, ...]) -> None:
    undos = saga.plan_for_cancel(status)

    assert undos == plan


@pytest.mark.parametrize("status", NOT_ON_THE_FORWARD_PATH)
def test_a_cancel_of_an_order_off_the_forward_path_undoes_nothing(status: OrderStatus) -> None:
    undos = saga.plan_for_cancel(status)

    assert undos == ()


@pytest.mark.parametrize(
    ("actor", "queue"),
    [
        ("reserve_stock", "stock"),
        ("charge_payment", "payments"),
        ("confirm", "orders"),
        ("notify", "fulfilment"),
        ("ship", "fulfilment"),
        ("release_stock", "stock"),
        ("refund_payment", "payments"),
        ("unconfirm", "orders"),
        ("send_cancellation", "fulfilment"),
        ("cancel_shipment", "fulfilment"),
    ],
)
def test_every_action_and_compensation_goes_to_the_queue_of_its_step(actor: str, queue: str) -> None:
    name = saga.queue_of(actor)

    assert name == queue


def test_an_unknown_actor_has_no_queue() -> None:
    with pytest.raises(KeyError):
        saga.queue_of("teleport")

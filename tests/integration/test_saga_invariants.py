"""The invariants under load and repetition: no double effect, no oversell, faults ride through retries."""

from __future__ import annotations

import uuid

import dramatiq

from pipeline import saga
from pipeline.audit import audit, violations_only
from scripts.fake_stripe import FakeStripeServer
from tests.factories import UNDELIVERABLE_ADDRESS, make_order, make_product
from tests.saga_helpers import count, stock, succeeded_charges, wait_until_terminal
from workers.enqueue import send, start_saga


def effects(db_url: str, order_id: uuid.UUID) -> dict[str, int]:
    """Everything the outside world saw for one order."""
    return {
        "reservations": count(db_url, "SELECT count(*) FROM reservations WHERE order_id = :id", id=order_id),
        "deliveries": count(db_url, "SELECT count(*) FROM local_deliveries WHERE order_id = :id", id=order_id),
        "payments": count(db_url, "SELECT count(*) FROM payments WHERE order_id = :id", id=order_id),
    }


def drain(worker: dramatiq.Worker) -> None:
    for queue in ("payments", "orders", "fulfilment", "stock"):
        worker.broker.join(queue, timeout=30_000)
    worker.join()


def test_delivering_every_step_message_twice_more_changes_nothing(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=10)
    order_id = make_order(db_url, [(product, 2)])
    start_saga(order_id)
    wait_until_terminal(db_url, [order_id])
    before = effects(db_url, order_id), stock(db_url, product), stripe_server.ledger()

    for step in saga.STEPS:
        send(step.name, order_id)
        send(step.name, order_id)
    drain(worker)

    assert (effects(db_url, order_id), stock(db_url, product), stripe_server.ledger()) == before
    assert len(succeeded_charges(stripe_server.ledger(), order_id)) == 1


def test_delivering_every_compensation_twice_more_refunds_and_notifies_once(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=10)
    order_id = make_order(db_url, [(product, 1)], address=UNDELIVERABLE_ADDRESS)
    start_saga(order_id)
    wait_until_terminal(db_url, [order_id])
    before = effects(db_url, order_id), stock(db_url, product), stripe_server.ledger()

    for undo in saga.UNDO_ORDER:
        send(undo, order_id)
        send(undo, order_id)
    drain(worker)

    assert (effects(db_url, order_id), stock(db_url, product), stripe_server.ledger()) == before
    [charge] = succeeded_charges(stripe_server.ledger(), order_id)
    assert len(charge["refunds"]) == 1


def test_racing_duplicates_of_each_message_charge_and_ship_once(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=50)
    order_ids = [make_order(db_url, [(product, 1)]) for _ in range(10)]

    for order_id in order_ids:  # three copies of the first message race through the whole chain
        start_saga(order_id)
        start_saga(order_id)
        start_saga(order_id)
    orders = wait_until_terminal(db_url, order_ids)
    drain(worker)

    assert {order.status for order in orders.values()} == {"shipped"}
    assert stock(db_url, product) == (50, 40, 0, 10)
    for order_id in order_ids:
        # One notification in local_deliveries; the shipment lives at the carrier (audited against its records).
        assert effects(db_url, order_id) == {"reservations": 1, "deliveries": 1, "payments": 1}
        assert len(succeeded_charges(stripe_server.ledger(), order_id)) == 1


def test_with_30_percent_payment_faults_every_order_ships_and_is_charged_once(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=100)
    order_ids = [make_order(db_url, [(product, 1)]) for _ in range(30)]
    stripe_server.set_faults(error_rate=0.15, rate_limit_rate=0.1, timeout_rate=0.05, timeout_delay_s=3, seed=7)

    for order_id in order_ids:
        start_saga(order_id)
    orders = wait_until_terminal(db_url, order_ids, seconds=120)

    assert {order.status for order in orders.values()} == {"shipped"}
    ledger = stripe_server.ledger()
    assert all(len(succeeded_charges(ledger, order_id)) == 1 for order_id in order_ids)
    assert count(db_url, "SELECT count(*) FROM saga_steps WHERE outcome = 'retrying'") > 0, "faults were injected"
    assert violations_only(audit(db_url, ledger)) == {}


def test_200_orders_racing_for_50_units_ship_exactly_50_and_never_oversell(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=50)
    order_ids = [make_order(db_url, [(product, 1)]) for _ in range(200)]

    for order_id in order_ids:
        start_saga(order_id)
    orders = wait_until_terminal(db_url, order_ids, seconds=180)

    outcomes = [(order.status, order.cancel_reason) for order in orders.values()]
    assert outcomes.count(("shipped", None)) == 50
    assert outcomes.count(("cancelled", "OUT_OF_STOCK")) == 150
    assert stock(db_url, product) == (50, 0, 0, 50)
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}

"""The checkout saga end to end: real worker, Postgres, Redis and the Stripe SDK on the loopback server."""

from __future__ import annotations

import dramatiq

from pipeline.audit import audit, violations_only
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.factories import UNDELIVERABLE_ADDRESS, make_order, make_product
from tests.saga_helpers import count, stock, succeeded_charges, timeline, wait_until_terminal
from workers.enqueue import start_saga


def deliveries(db_url: str, order_id: object, provider: str, kind: str | None = None) -> int:
    sql = "SELECT count(*) FROM local_deliveries WHERE order_id = :id AND provider = :provider"
    if kind:
        sql += " AND payload->>'kind' = :kind"
    return count(db_url, sql, id=order_id, provider=provider, kind=kind)


def test_an_order_goes_from_pending_to_shipped_with_one_charge_notification_and_shipment(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    product = make_product(db_url, stock=10)
    order_id = make_order(db_url, [(product, 3)])

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id])[order_id]

    assert order.status == "shipped"
    assert [c["amount"] for c in succeeded_charges(stripe_server.ledger(), order_id)] == [3750]
    assert deliveries(db_url, order_id, "notifier", "confirmation") == 1
    assert [s["status"] for s in carrier_server.ledger() if s["orderId"] == str(order_id)] == ["created"]
    assert stock(db_url, product) == (10, 7, 0, 3)
    assert timeline(db_url, order_id) == [
        (step, "succeeded") for step in ("reserve_stock", "charge_payment", "confirm", "notify", "ship")
    ]
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}


def test_an_order_of_two_products_ships_both_lines_and_an_undeliverable_one_puts_both_back_on_the_shelf(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    # Each product's counters and its reservation move in one statement per product, in the products' order.
    mugs, cups = make_product(db_url, stock=10), make_product(db_url, stock=10)
    shipped = make_order(db_url, [(mugs, 2), (cups, 5)])
    refused = make_order(db_url, [(cups, 1), (mugs, 3)], address=UNDELIVERABLE_ADDRESS)

    start_saga(shipped)
    start_saga(refused)
    orders = wait_until_terminal(db_url, [shipped, refused])

    assert (orders[shipped].status, orders[refused].status) == ("shipped", "cancelled")
    assert stock(db_url, mugs) == (10, 8, 0, 2)
    assert stock(db_url, cups) == (10, 5, 0, 5)
    held = "SELECT count(*) FROM reservations WHERE order_id = :id AND status = :status"
    assert count(db_url, held, id=shipped, status="shipped") == 2
    assert count(db_url, held, id=refused, status="released") == 2
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}


def test_a_declined_card_releases_the_stock_and_refunds_nothing(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=10)
    order_id = make_order(db_url, [(product, 2)], payment_method="pm_card_chargeDeclinedInsufficientFunds")

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id])[order_id]

    assert (order.status, order.cancel_reason) == ("cancelled", "PAYMENT_DECLINED")
    assert stock(db_url, product) == (10, 10, 0, 0)
    assert succeeded_charges(stripe_server.ledger(), order_id) == []
    assert ("refund_payment", "skipped") in timeline(db_url, order_id)
    assert ("release_stock", "succeeded") in timeline(db_url, order_id)
    assert deliveries(db_url, order_id, "notifier") == 0
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}


def test_an_order_for_more_than_the_stock_is_cancelled_out_of_stock_without_a_charge(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    plenty, scarce = make_product(db_url, stock=10), make_product(db_url, stock=1)
    order_id = make_order(db_url, [(plenty, 2), (scarce, 2)])

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id])[order_id]

    assert (order.status, order.cancel_reason) == ("cancelled", "OUT_OF_STOCK")
    assert stock(db_url, plenty) == (10, 10, 0, 0), "all lines or none"
    assert stock(db_url, scarce) == (1, 1, 0, 0)
    assert stripe_server.ledger() == []


def test_a_rejected_shipment_refunds_releases_and_sends_a_cancellation_notice(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=10)
    order_id = make_order(db_url, [(product, 1)], address=UNDELIVERABLE_ADDRESS)

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id])[order_id]

    assert (order.status, order.cancel_reason) == ("cancelled", "SHIPPING_REJECTED")
    [charge] = succeeded_charges(stripe_server.ledger(), order_id)
    assert charge["amount_refunded"] == charge["amount"] == 1250
    assert stock(db_url, product) == (10, 10, 0, 0)
    assert deliveries(db_url, order_id, "notifier", "confirmation") == 1
    assert deliveries(db_url, order_id, "notifier", "cancellation") == 1
    assert [step for step, outcome in timeline(db_url, order_id) if outcome != "failed"][-4:] == [
        "send_cancellation",
        "unconfirm",
        "refund_payment",
        "release_stock",
    ]
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}


def test_totals_that_disagree_at_confirm_are_refunded_and_released(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 1)], extra_cents=1)

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id])[order_id]

    assert (order.status, order.cancel_reason) == ("cancelled", "PERMANENT_ERROR")
    [charge] = succeeded_charges(stripe_server.ledger(), order_id)
    assert charge["amount_refunded"] == 1251
    assert stock(db_url, product) == (5, 5, 0, 0)

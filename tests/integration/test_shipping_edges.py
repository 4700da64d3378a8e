"""The carrier's records decide what shipped: a lost answer is looked up, a cancel voids, a picked-up parcel ships.

Real Postgres and Redis, the Stripe SDK on the loopback Stripe, the HTTP carrier adapter on the local carrier.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from pipeline.audit import audit, violations_only
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import adapters_for, order_row, run_steps, run_undos
from tests.factories import GOOD_ADDRESS, make_order, make_product
from tests.saga_helpers import stock
from workers.saga.cancel import cancel_order

ITEMS = [{"productId": "p-1", "quantity": 1}]
UP_TO_NOTIFIED = ("reserve_stock", "charge_payment", "confirm", "notify")


@pytest.fixture
def servers_up(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> tuple[str, FakeStripeServer, FakeCarrierServer]:
    return db_url, stripe_server, carrier_server


def notified_order(db_url: str, stripe: FakeStripeServer, carrier: FakeCarrierServer) -> tuple[uuid.UUID, uuid.UUID]:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url), *UP_TO_NOTIFIED)
    return order_id, product


def shipments_of(carrier: FakeCarrierServer, order_id: uuid.UUID) -> list[str]:
    return [shipment["status"] for shipment in carrier.ledger() if shipment["orderId"] == str(order_id)]


def test_a_shipment_whose_answer_was_lost_is_found_by_its_key_and_the_order_ships_once(
    servers_up: tuple[str, FakeStripeServer, FakeCarrierServer],
) -> None:
    db_url, stripe, carrier = servers_up
    order_id, product = notified_order(db_url, stripe, carrier)
    carrier.set_faults(lost_answer_rate=1.0, timeout_delay_s=2)

    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url, timeout_s=0.5), "ship")

    assert order_row(db_url, order_id)["status"] == "shipped"
    assert shipments_of(carrier, order_id) == ["created"]
    assert stock(db_url, product) == (5, 3, 0, 2)
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_a_cancel_after_the_carrier_accepted_a_lost_shipment_voids_it_before_refunding(
    servers_up: tuple[str, FakeStripeServer, FakeCarrierServer],
) -> None:
    db_url, stripe, carrier = servers_up
    order_id, product = notified_order(db_url, stripe, carrier)
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    # A ship attempt whose worker died after the carrier accepted: the shipment exists, our records do not know it.
    adapters.carrier.create_shipment(
        order_id=order_id, address=GOOD_ADDRESS, items=ITEMS, idempotency_key=f"{order_id}:ship"
    )

    cancel_order(db_url, order_id)
    run_undos(order_id, adapters)

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert shipments_of(carrier, order_id) == ["cancelled"]
    assert stock(db_url, product) == (5, 5, 0, 0)
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_a_parcel_picked_up_before_the_void_makes_the_order_shipped_and_never_refunded(
    servers_up: tuple[str, FakeStripeServer, FakeCarrierServer],
) -> None:
    db_url, stripe, carrier = servers_up
    order_id, product = notified_order(db_url, stripe, carrier)
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    key = f"{order_id}:ship"
    made = adapters.carrier.create_shipment(order_id=order_id, address=GOOD_ADDRESS, items=ITEMS, idempotency_key=key)
    carrier.pick_up(made.shipment_id)

    cancel_order(db_url, order_id)
    run_undos(order_id, adapters)

    row = order_row(db_url, order_id)
    assert (row["status"], row["cancel_reason"]) == ("shipped", None)
    assert "SHIPMENT_PICKED_UP" in row["last_error"]
    assert shipments_of(carrier, order_id) == ["picked_up"]
    assert stock(db_url, product) == (5, 3, 0, 2)
    assert [intent["amount_refunded"] for intent in stripe.ledger()] == [0]
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_the_audit_sees_a_carrier_shipment_for_a_cancelled_order(
    servers_up: tuple[str, FakeStripeServer, FakeCarrierServer],
) -> None:
    db_url, stripe, carrier = servers_up
    order_id, _ = notified_order(db_url, stripe, carrier)
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    cancel_order(db_url, order_id)
    run_undos(order_id, adapters)
    # A shipment the saga never heard of (made behind its back): the carrier's records show it.
    adapters.carrier.create_shipment(order_id=order_id, address=GOOD_ADDRESS, items=ITEMS, idempotency_key="elsewhere")

    found = violations_only(audit(db_url, stripe.ledger(), carrier.ledger()))

    assert found == {"carrier holds a shipment for an order not shipped": [str(order_id)]}

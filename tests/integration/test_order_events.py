"""Order events: written in the transaction that changes the order, and read back in an order that never skips."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from models.db import engine_for, transaction
from models.status import OrderStatus
from pipeline.order_store import advance, lock_order
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.api_helpers import api_client, auth, new_key, order_body
from tests.conftest import Servers
from tests.edge_helpers import adapters_for, intent_of, run_steps
from tests.factories import make_order, make_product
from tests.integration.test_money_edges import deliver_events
from tests.integration.test_webhooks import SECRET, webhook_app
from tests.saga_helpers import wait_until_terminal
from workers.enqueue import start_saga

HAPPY_PATH = ["order.accepted", "order.reserved", "order.paid", "order.confirmed", "order.notified", "order.shipped"]


@pytest.fixture
def hook(servers: Servers, db_url: str) -> Iterator[TestClient]:
    """Our Stripe webhook route, to hand it the provider's events."""
    with TestClient(webhook_app(servers, db_url, SECRET)) as client:
        yield client


def events_of(db_url: str, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """The order's event bodies in sequence order."""
    with engine_for(db_url).connect() as connection:
        rows = connection.execute(
            text("SELECT payload FROM order_events WHERE order_id = :id ORDER BY sequence"), {"id": order_id}
        )
        return [row[0] for row in rows]


def feed(client: TestClient, shop: str, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
    response = client.get("/v1/events", params=params, headers=auth("orders:read", client=shop))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def place(client: TestClient, shop: str, product: uuid.UUID) -> uuid.UUID:
    response = client.post("/v1/orders", json=order_body((product, 1, 1250)), headers=auth(client=shop, key=new_key()))
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def test_an_order_placed_and_shipped_has_one_event_per_status_numbered_from_one(
    servers: Servers, db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=5)
    with api_client(db_url, servers.redis_url) as client:
        order_id = place(client, "shop-1", product)
        wait_until_terminal(db_url, [order_id])

    events = events_of(db_url, order_id)

    assert [event["type"] for event in events] == HAPPY_PATH
    assert [event["sequence"] for event in events] == list(range(1, 7))
    assert [event["data"]["order"]["status"] for event in events] == [
        "pending", "reserved", "paid", "confirmed", "notified", "shipped"
    ]  # fmt: skip
    assert len({event["id"] for event in events}) == 6
    assert all(event["data"]["order"]["id"] == str(order_id) for event in events)
    shipment = events[-1]["data"]["order"]["shipment"]
    assert shipment["carrier"] and shipment["trackingNumber"]


def test_a_declined_order_reports_that_it_is_cancelling_and_then_cancelled_with_the_reason(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 1)], payment_method="pm_card_chargeDeclinedInsufficientFunds")

    start_saga(order_id)
    wait_until_terminal(db_url, [order_id])
    events = events_of(db_url, order_id)

    assert [event["type"] for event in events] == ["order.reserved", "order.cancelling", "order.cancelled"]
    assert events[-1]["data"]["order"]["cancelReason"] == "PAYMENT_DECLINED"


def test_a_change_that_rolls_back_leaves_no_event(db_url: str) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 1)])

    try:
        with transaction(db_url) as connection:
            order = lock_order(connection, order_id)
            advance(connection, order, OrderStatus.RESERVED, "charge_payment", 30)
            raise RuntimeError("the step fails after its change")
    except RuntimeError:
        pass

    assert events_of(db_url, order_id) == []


def test_each_client_reads_only_its_own_events_and_pages_through_them_without_gaps_or_repeats(
    servers: Servers, db_url: str
) -> None:
    product = make_product(db_url, stock=10)
    with api_client(db_url, servers.redis_url, enqueue=lambda _: None) as client:
        mine = [place(client, "shop-a", product) for _ in range(3)]
        theirs = place(client, "shop-b", product)
        walked: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = feed(client, "shop-a", cursor, limit=2)
            walked += page["data"]
            cursor = page["nextCursor"]
            if not page["hasMore"]:
                break
        polled = feed(client, "shop-a", cursor)
        with transaction(db_url) as connection:
            advance(connection, lock_order(connection, mine[0]), OrderStatus.RESERVED, "charge_payment", 30)
        later = feed(client, "shop-a", cursor)
        other = feed(client, "shop-b")

    assert [uuid.UUID(event["data"]["order"]["id"]) for event in walked] == mine
    assert (polled["data"], polled["nextCursor"]) == ([], cursor), "a caught-up reader polls from its cursor"
    assert [event["type"] for event in later["data"]] == ["order.reserved"]
    assert [event["data"]["order"]["id"] for event in other["data"]] == [str(theirs)]


def test_an_event_whose_transaction_is_still_open_holds_back_later_ones_so_a_poller_never_skips_it(
    servers: Servers, db_url: str
) -> None:
    product = make_product(db_url, stock=10)
    slow, fast = make_order(db_url, [(product, 1)]), make_order(db_url, [(product, 1)])
    with api_client(db_url, servers.redis_url, enqueue=lambda _: None) as client:
        with engine_for(db_url).connect() as open_connection:
            open_transaction = open_connection.begin()
            advance(open_connection, lock_order(open_connection, slow), OrderStatus.RESERVED, "charge_payment", 30)
            with transaction(db_url) as connection:  # starts after, commits first
                advance(connection, lock_order(connection, fast), OrderStatus.RESERVED, "charge_payment", 30)
            while_open = feed(client, "shop-1")
            open_transaction.commit()
        after_commit = feed(client, "shop-1", while_open["nextCursor"])

    assert while_open["data"] == [], "the later commit waits behind the open transaction"
    assert [event["data"]["order"]["id"] for event in after_commit["data"]] == [str(slow), str(fast)]


def test_a_cursor_the_feed_did_not_make_is_refused(servers: Servers, db_url: str) -> None:
    with api_client(db_url, servers.redis_url, enqueue=lambda _: None) as client:
        response = client.get("/v1/events", params={"cursor": "bm9wZQ"}, headers=auth("orders:read"))

    assert response.status_code == 422 and response.json()["code"] == "INVALID_CURSOR"


def test_a_dashboard_refund_and_a_dispute_reach_the_shop_once_each_however_often_stripe_tells_us(
    db_url: str, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer, hook: TestClient
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    adapters = adapters_for(db_url, stripe_server.url, carrier_server.url)
    run_steps(order_id, adapters, "reserve_stock", "charge_payment", "confirm", "notify", "ship")
    intent = intent_of(stripe_server.ledger(), order_id)["id"]
    stripe_server.refund_from_dashboard(intent, amount=500)
    stripe_server.open_dispute(intent)
    deliver_events(hook, stripe_server, "refund.created", "charge.dispute.created")
    deliver_events(hook, stripe_server, "charge.dispute.created")  # a second event about the same dispute

    events = events_of(db_url, order_id)

    assert [event["type"] for event in events][-2:] == ["order.refunded", "order.disputed"]
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert events[-2]["data"]["refund"]["amount"] == 500
    assert events[-1]["data"]["dispute"]["id"] and events[-1]["data"]["order"]["status"] == "shipped"

"""POST/GET /v1/orders and cancel, against the real test Postgres and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from models.db import unit_of_work
from models.orders import Order
from models.saga import SagaStep
from tests.api_helpers import api_client, assert_error, auth, new_key, order_body, row_counts
from tests.conftest import Servers
from tests.factories import make_product
from tests.saga_helpers import queued


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, step_lease_s=30, rate_limit_burst=1000) as client:
        yield client


def place(api: TestClient, body: dict[str, object]) -> dict[str, object]:
    response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_valid_order_is_written_pending_priced_from_the_catalogue_and_answered_201(
    api: TestClient, db_url: str
) -> None:
    mug, tea = make_product(db_url, price_cents=1250), make_product(db_url, price_cents=399)

    response = api.post(
        "/v1/orders", json=order_body((mug, 2, 1250), (tea, 3, 399), user="alice"), headers=auth(key=new_key())
    )

    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["Location"] == f"/v1/orders/{order['id']}"
    assert order["status"] == "pending"
    assert order["totalAmount"] == 2 * 1250 + 3 * 399
    assert order["currency"] == "USD" and order["userId"] == "alice"
    assert order["items"] == [
        {"productId": str(mug), "quantity": 2, "price": 1250},
        {"productId": str(tea), "quantity": 3, "price": 399},
    ]
    assert order["shippingAddress"]["zipCode"] == "62701"
    assert datetime.fromisoformat(order["createdAt"]).tzinfo is not None
    assert row_counts(db_url) | {"products": 0} == row_counts(db_url) | {
        "orders": 1,
        "order_lines": 2,
        "idempotency_keys": 1,
        "products": 0,
    }


def test_an_order_with_an_email_keeps_it_and_shows_it_back_in_the_answer_the_detail_and_the_list(
    api: TestClient, db_url: str
) -> None:
    mug = make_product(db_url)

    order = place(api, order_body((mug, 1, 1250), user="ada", email="Ada.Lovelace@Example.COM"))

    assert order["email"] == "Ada.Lovelace@example.com", "the domain is normalized, the mailbox kept"
    with unit_of_work(db_url) as session:
        row = session.get(Order, uuid.UUID(str(order["id"])))
        assert row is not None and row.customer_email == "Ada.Lovelace@example.com"
    detail = api.get(f"/v1/orders/{order['id']}", headers=auth("orders:read")).json()
    [listed] = api.get("/v1/orders", params={"userId": "ada"}, headers=auth("orders:read")).json()["data"]
    assert detail["email"] == listed["email"] == "Ada.Lovelace@example.com"
    assert place(api, order_body((mug, 1, 1250)))["email"] is None, "the address is optional"


@pytest.mark.parametrize("email", ["not-an-address", "ada@", "ada@localhost", "a" * 250 + "@example.com", ""])
def test_an_order_with_a_malformed_email_is_422_and_writes_nothing(api: TestClient, db_url: str, email: str) -> None:
    mug = make_product(db_url)

    response = api.post("/v1/orders", json=order_body((mug, 1, 1250), email=email), headers=auth(key=new_key()))

    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert "email" in str(body["details"])
    assert row_counts(db_url)["orders"] == 0


def test_an_accepted_order_is_leased_to_reserve_stock_in_the_same_transaction(api: TestClient, db_url: str) -> None:
    mug = make_product(db_url)
    before = datetime.now(UTC)

    order = place(api, order_body((mug, 1, 1250)))

    with unit_of_work(db_url) as session:
        row = session.get(Order, uuid.UUID(str(order["id"])))
        assert row is not None
        assert row.current_step == "reserve_stock"
        assert row.lease_expires_at is not None
        assert before + timedelta(seconds=25) < row.lease_expires_at < datetime.now(UTC) + timedelta(seconds=31)


def test_an_accepted_order_puts_one_reserve_stock_message_on_the_stock_queue(
    api: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order = place(api, order_body((make_product(db_url), 1, 1250)))

    messages = queued(redis_client, "stock")

    assert [(m.actor_name, list(m.args)) for m in messages] == [("reserve_stock", [order["id"]])]


def test_an_order_is_still_accepted_when_the_broker_is_down_and_keeps_its_lease(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    def broker_down(order_id: str) -> None:
        raise redis.ConnectionError("Connection refused")

    with api_client(db_url, servers.redis_url, enqueue=broker_down) as api:
        order = place(api, order_body((make_product(db_url), 1, 1250)))

    with unit_of_work(db_url) as session:
        row = session.get(Order, uuid.UUID(str(order["id"])))
        assert row is not None and row.status == "pending" and row.lease_expires_at is not None
    assert queued(redis_client, "stock") == []


def test_an_order_is_read_back_with_its_timeline_in_start_order(api: TestClient, db_url: str) -> None:
    order = place(api, order_body((make_product(db_url), 1, 1250)))
    order_id, start = uuid.UUID(str(order["id"])), datetime.now(UTC)
    with unit_of_work(db_url) as session:
        for seconds, outcome, error in ((1, "retrying", "TRANSIENT_ERROR"), (3, "succeeded", None)):
            session.add(
                SagaStep(
                    order_id=order_id,
                    step="reserve_stock",
                    kind="action",
                    attempt=seconds // 2 + 1,
                    outcome=outcome,
                    error_code=error,
                    error_message=error and "timeout",
                    started_at=start + timedelta(seconds=seconds),
                    finished_at=start + timedelta(seconds=seconds + 1),
                    duration_ms=1000,
                )
            )

    response = api.get(f"/v1/orders/{order_id}", headers=auth("orders:read"))

    assert response.status_code == 200
    detail = response.json()
    assert {k: detail[k] for k in order} == order
    assert detail["cancelReason"] is None and detail["lastError"] is None
    assert [(t["attempt"], t["outcome"], t["errorCode"], t["durationMs"]) for t in detail["timeline"]] == [
        (1, "retrying", "TRANSIENT_ERROR", 1000),
        (2, "succeeded", None, 1000),
    ]
    assert set(detail["timeline"][0]) == {
        "step",
        "kind",
        "attempt",
        "outcome",
        "errorCode",
        "errorMessage",
        "startedAt",
        "finishedAt",
        "durationMs",
    }


def test_an_unknown_order_is_404_and_a_malformed_id_is_422(api: TestClient) -> None:
    body = assert_error(api.get(f"/v1/orders/{uuid.uuid4()}", headers=auth()), 404, "ORDER_NOT_FOUND")
    assert "orderId" in body["details"]
    assert_error(api.get("/v1/orders/not-a-uuid", headers=auth()), 422, "VALIDATION_ERROR")
    assert_error(api.post("/v1/orders/not-a-uuid/cancel", headers=auth("admin")), 422, "VALIDATION_ERROR")


def test_the_list_is_newest_first_paged_and_filtered_by_user_and_status(api: TestClient, db_url: str) -> None:
    mug = make_product(db_url)
    placed = [place(api, order_body((mug, 1, 1250), user="bob" if n % 2 else "carol")) for n in range(5)]
    ids = [order["id"] for order in placed]
    with unit_of_work(db_url) as session:
        session.execute(update(Order).where(Order.id == uuid.UUID(str(ids[0]))).values(status="shipped"))

    first = api.get("/v1/orders", params={"limit": 2}, headers=auth("orders:read")).json()
    second = api.get(first["next"], headers=auth("orders:read")).json()
    third = api.get("/v1/orders", params={"limit": 2, "cursor": second["nextCursor"]}, headers=auth()).json()
    bobs = api.get("/v1/orders", params={"userId": "bob"}, headers=auth("orders:read")).json()
    shipped = api.get("/v1/orders", params={"status": "shipped"}, headers=auth("orders:read")).json()

    assert [o["id"] for o in first["data"] + second["data"] + third["data"]] == list(reversed(ids))
    assert second["data"][-1] == placed[1], "a listed order is the document its POST answered"
    assert first["next"] == f"/v1/orders?limit=2&cursor={first['nextCursor']}"
    assert third["nextCursor"] is None and third["next"] is None
    assert {o["userId"] for o in bobs["data"]} == {"bob"} and len(bobs["data"]) == 2
    assert [o["id"] for o in shipped["data"]] == [ids[0]]
    assert len(api.get("/v1/orders", headers=auth("orders:read")).json()["data"]) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": 0},
        {"offset": 10_000_000},
        {"cursor": "not base64!"},
        {"cursor": "bm90IGpzb24"},
        {"cursor": "WyJ5ZXN0ZXJkYXkiLCJ4Il0"},
        {"cursor": "x" * 513},
        {"limit": "ten"},
        {"status": "lost"},
        {"userId": "u" * 65},
        {"userId": "a\x00"},
    ],
)
def test_list_parameters_out_of_range_are_422(api: TestClient, params: dict[str, Any]) -> None:
    response = api.get("/v1/orders", params=params, headers=auth())
    assert response.status_code == 422 and response.json()["code"] in ("VALIDATION_ERROR", "INVALID_CURSOR")


def test_cancel_starts_the_compensation_and_answers_202_with_the_order(
    api: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order = place(api, order_body((make_product(db_url), 1, 1250)))
    redis_client.delete("orderflow:stock", "orderflow:stock.msgs")

    response = api.post(f"/v1/orders/{order['id']}/cancel", headers=auth("admin"))

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "compensating"
    assert response.json()["cancelReason"] == "CANCELLED_BY_REQUEST"
    assert [m.actor_name for m in queued(redis_client, "stock")] == ["release_stock"]
    assert api.post(f"/v1/orders/{order['id']}/cancel", headers=auth("admin")).status_code == 202


def test_cancelling_a_shipped_order_is_409_and_an_unknown_one_404(api: TestClient, db_url: str) -> None:
    order = place(api, order_body((make_product(db_url), 1, 1250)))
    with unit_of_work(db_url) as session:
        session.execute(update(Order).where(Order.id == uuid.UUID(str(order["id"]))).values(status="shipped"))

    assert_error(api.post(f"/v1/orders/{order['id']}/cancel", headers=auth("admin")), 409, "ORDER_ALREADY_SHIPPED")
    assert_error(api.post(f"/v1/orders/{uuid.uuid4()}/cancel", headers=auth("admin")), 404, "ORDER_NOT_FOUND")


def test_cancel_needs_the_write_scope(api: TestClient, db_url: str) -> None:
    order = place(api, order_body((make_product(db_url), 1, 1250)))

    assert_error(api.post(f"/v1/orders/{order['id']}/cancel", headers=auth("orders:read")), 403, "FORBIDDEN")
    assert api.post(f"/v1/orders/{order['id']}/cancel", headers=auth("orders:write")).status_code == 202

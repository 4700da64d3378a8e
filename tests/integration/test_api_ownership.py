"""Each shop sees only its own orders: another's id is 404 (as if it did not exist), lists cover only its own.

Against the real app, Postgres and Redis; two shops on one deployment, as a new user would try it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.db import unit_of_work
from models.orders import Order
from tests.api_helpers import api_client, assert_error, auth, new_key, order_body
from tests.conftest import Servers
from tests.factories import make_product


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, rate_limit_burst=5000, rate_limit_per_s=5000) as client:
        yield client


def place(api: TestClient, product: uuid.UUID, shop: str, user: str = "u-1") -> str:
    response = api.post(
        "/v1/orders", json=order_body((product, 1, 1250), user=user), headers=auth(client=shop, key=new_key())
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def listed(api: TestClient, shop: str, scopes: tuple[str, ...] = ("orders:read",), **params: Any) -> list[str]:
    """Every order id a shop's walk through the list shows, following `next` to the end."""
    ids: list[str] = []
    path: str | None = "/v1/orders"
    query: dict[str, Any] | None = {"limit": 2, **params}
    while path is not None:
        response = api.get(path, params=query, headers=auth(*scopes, client=shop))
        assert response.status_code == 200, response.text
        ids += [order["id"] for order in response.json()["data"]]
        path, query = response.json()["next"], None
    return ids


def test_an_order_belongs_to_the_client_whose_token_placed_it(api: TestClient, db_url: str) -> None:
    order_id = place(api, make_product(db_url), "shop-a")

    with unit_of_work(db_url) as session:
        assert session.scalar(select(Order.client_id).where(Order.id == uuid.UUID(order_id))) == "shop-a"


def test_another_shops_order_answers_404_exactly_like_an_order_that_does_not_exist(
    api: TestClient, db_url: str
) -> None:
    order_id = place(api, make_product(db_url), "shop-a")

    theirs = api.get(f"/v1/orders/{order_id}", headers=auth("orders:read", client="shop-b"))
    missing_id = str(uuid.uuid4())
    missing = api.get(f"/v1/orders/{missing_id}", headers=auth("orders:read", client="shop-b"))

    assert_error(theirs, 404, "ORDER_NOT_FOUND")
    assert theirs.json() == {**missing.json(), "message": f"no order {order_id}", "details": {"orderId": order_id}}
    assert "shippingAddress" not in theirs.text
    assert api.get(f"/v1/orders/{order_id}", headers=auth("orders:read", client="shop-a")).status_code == 200


def test_the_list_and_its_user_filter_cover_only_the_clients_own_orders(api: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    mine = [place(api, product, "shop-a", user="same-user") for _ in range(3)]
    theirs = [place(api, product, "shop-b", user="same-user") for _ in range(2)]

    assert sorted(listed(api, "shop-a")) == sorted(mine)
    assert sorted(listed(api, "shop-a", userId="same-user")) == sorted(mine)
    assert sorted(listed(api, "shop-b", status="pending")) == sorted(theirs)
    assert listed(api, "shop-c") == []


def test_admin_sees_and_cancels_every_shops_orders(api: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    ids = [place(api, product, shop) for shop in ("shop-a", "shop-b", "shop-a")]

    assert listed(api, "operator", scopes=("admin",)) == list(reversed(ids))
    assert api.get(f"/v1/orders/{ids[1]}", headers=auth("admin", client="operator")).status_code == 200
    cancelled = api.post(f"/v1/orders/{ids[1]}/cancel", headers=auth("admin", client="operator"))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "compensating"


def test_a_shop_cancels_its_own_order_but_another_shops_is_404_and_left_alone(api: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    order_a, order_b = place(api, product, "shop-a"), place(api, product, "shop-b")

    refused = api.post(f"/v1/orders/{order_b}/cancel", headers=auth("orders:write", client="shop-a"))
    accepted = api.post(f"/v1/orders/{order_a}/cancel", headers=auth("orders:write", client="shop-a"))

    assert_error(refused, 404, "ORDER_NOT_FOUND")
    assert accepted.status_code == 202 and accepted.json()["cancelReason"] == "CANCELLED_BY_REQUEST"
    with unit_of_work(db_url) as session:
        assert session.scalar(select(Order.status).where(Order.id == uuid.UUID(order_b))) == "pending"


def test_the_same_idempotency_key_in_two_shops_places_two_orders(api: TestClient, db_url: str) -> None:
    body, key = order_body((make_product(db_url), 1, 1250)), new_key()

    first = api.post("/v1/orders", json=body, headers=auth(client="shop-a", key=key))
    second = api.post("/v1/orders", json=body, headers=auth(client="shop-b", key=key))

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def test_cursor_pages_neither_repeat_nor_skip_while_orders_keep_arriving(api: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    before = [place(api, product, "shop-a") for _ in range(12)]
    stop = threading.Event()
    arrived: list[str] = []

    def keep_placing() -> None:
        while not stop.is_set():
            arrived.append(place(api, product, "shop-a"))

    placer = threading.Thread(target=keep_placing)
    placer.start()
    try:
        walked = listed(api, "shop-a")
    finally:
        stop.set()
        placer.join()

    assert arrived, "orders arrived while the list was walked"
    assert len(walked) == len(set(walked)), "no order is listed twice"
    assert set(before) <= set(walked), "every order placed before the walk is on some page"
    assert walked[-len(before) :] == list(reversed(before))

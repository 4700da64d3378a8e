"""/v1/products: the catalogue and its stock admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from models.db import unit_of_work
from models.inventory import Product
from tests.api_helpers import api_client, assert_error, auth, row_counts
from tests.conftest import Servers
from tests.factories import make_product, random_sku

ADMIN = auth("admin")


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, rate_limit_burst=1000) as client:
        yield client


def new_product(**changes: Any) -> dict[str, Any]:
    return {"sku": random_sku("p"), "name": "Blue mug", "price": 1250, "currency": "USD", "stock": 7, **changes}


def test_an_admin_adds_a_product_and_gets_201_with_its_location(api: TestClient) -> None:
    response = api.post("/v1/products", json=new_product(sku="mug-blue"), headers=ADMIN)

    assert response.status_code == 201, response.text
    product = response.json()
    assert response.headers["Location"] == f"/v1/products/{product['id']}"
    assert {k: product[k] for k in ("sku", "price", "currency", "available", "reserved", "shipped", "total")} == {
        "sku": "mug-blue",
        "price": 1250,
        "currency": "USD",
        "available": 7,
        "reserved": 0,
        "shipped": 0,
        "total": 7,
    }
    assert api.get(response.headers["Location"], headers=auth("orders:read")).json() == product


def test_a_taken_sku_is_409_and_writes_nothing(api: TestClient, db_url: str) -> None:
    api.post("/v1/products", json=new_product(sku="mug-red"), headers=ADMIN)
    before = row_counts(db_url)

    response = api.post("/v1/products", json=new_product(sku="mug-red"), headers=ADMIN)

    assert assert_error(response, 409, "SKU_ALREADY_EXISTS")["details"] == {"sku": "mug-red"}
    assert row_counts(db_url) == before


@pytest.mark.parametrize(
    "changes",
    [
        {"price": 12.5},
        {"price": "1250"},
        {"price": -1},
        {"stock": -1},
        {"currency": "dollars"},
        {"sku": "has space"},
        {"name": ""},
        {"name": "n" * 201},
        {"extra": 1},
    ],
)
def test_an_invalid_product_is_422_and_writes_nothing(api: TestClient, db_url: str, changes: dict[str, Any]) -> None:
    before = row_counts(db_url)

    assert_error(api.post("/v1/products", json=new_product(**changes), headers=ADMIN), 422, "VALIDATION_ERROR")

    assert row_counts(db_url) == before


def test_adding_a_product_needs_the_admin_scope(api: TestClient) -> None:
    assert_error(api.post("/v1/products", json=new_product(), headers=auth()), 403, "FORBIDDEN")


def test_the_catalogue_is_listed_by_sku_in_pages(api: TestClient) -> None:
    for sku in ("c-mug", "a-mug", "b-mug"):
        api.post("/v1/products", json=new_product(sku=sku), headers=ADMIN)

    first = api.get("/v1/products", params={"limit": 2}, headers=auth("orders:read")).json()
    rest = api.get(first["next"], headers=auth("orders:read")).json()

    assert [p["sku"] for p in first["data"]] == ["a-mug", "b-mug"]
    assert [p["sku"] for p in rest["data"]] == ["c-mug"]
    assert rest["next"] is None and rest["nextCursor"] is None
    assert_error(api.get("/v1/products", params={"offset": 2}, headers=auth()), 422, "VALIDATION_ERROR")
    assert_error(api.get("/v1/products", params={"cursor": "WzFd"}, headers=auth()), 422, "INVALID_CURSOR")
    assert_error(api.get("/v1/products", params={"limit": 500}, headers=auth()), 422, "VALIDATION_ERROR")


def test_setting_stock_moves_total_by_the_same_amount_and_keeps_reserved_and_shipped(
    api: TestClient, db_url: str
) -> None:
    product_id = make_product(db_url, stock=10)
    with unit_of_work(db_url) as session:  # 3 held for an order, 2 gone with a shipment
        session.execute(
            update(Product).where(Product.id == product_id).values(available=5, reserved=3, shipped=2, total=10)
        )

    response = api.put(f"/v1/products/{product_id}/stock", json={"available": 40}, headers=ADMIN)

    assert response.status_code == 200, response.text
    stock = {k: response.json()[k] for k in ("available", "reserved", "shipped", "total")}
    assert stock == {"available": 40, "reserved": 3, "shipped": 2, "total": 45}
    down = api.put(f"/v1/products/{product_id}/stock", json={"available": 0}, headers=ADMIN).json()
    assert (down["available"], down["total"]) == (0, 5)


def test_concurrent_stock_updates_leave_stock_conserved(api: TestClient, db_url: str) -> None:
    product_id = make_product(db_url, stock=10)

    def put(value: int) -> int:
        return api.put(f"/v1/products/{product_id}/stock", json={"available": value}, headers=ADMIN).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(put, range(50))) == {200}

    with unit_of_work(db_url) as session:
        product = session.get(Product, product_id)
        assert product is not None and product.total == product.available + product.reserved + product.shipped


def test_stock_of_an_unknown_product_is_404_and_of_a_malformed_id_422(api: TestClient) -> None:
    response = api.put(f"/v1/products/{uuid.uuid4()}/stock", json={"available": 1}, headers=ADMIN)

    assert_error(response, 404, "PRODUCT_NOT_FOUND")
    assert_error(api.put("/v1/products/x/stock", json={"available": 1}, headers=ADMIN), 422, "VALIDATION_ERROR")
    assert_error(api.get(f"/v1/products/{uuid.uuid4()}", headers=auth()), 404, "PRODUCT_NOT_FOUND")


@pytest.mark.parametrize("body", [{"available": -1}, {"available": 1.5}, {"available": "3"}, {}, {"total": 3}])
def test_an_invalid_stock_value_is_422_and_changes_nothing(api: TestClient, db_url: str, body: dict[str, Any]) -> None:
    product_id = make_product(db_url, stock=10)

    response = api.put(f"/v1/products/{product_id}/stock", json=body, headers=ADMIN)

    assert_error(response, 422, "VALIDATION_ERROR")
    with unit_of_work(db_url) as session:
        product = session.get(Product, product_id)
        assert product is not None and (product.available, product.total) == (10, 10)


def test_stock_that_would_overflow_the_total_is_409(api: TestClient, db_url: str) -> None:
    product_id = make_product(db_url, stock=0)
    with unit_of_work(db_url) as session:
        session.execute(update(Product).where(Product.id == product_id).values(shipped=2**31 - 10, total=2**31 - 10))

    response = api.put(f"/v1/products/{product_id}/stock", json={"available": 100}, headers=ADMIN)

    assert_error(response, 409, "STOCK_OUT_OF_RANGE")

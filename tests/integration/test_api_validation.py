"""Bad input never reaches the pipeline: each rejection has its code, and no rejected request leaves a row."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api_helpers import api_client, assert_error, auth, new_key, order_body, row_counts
from tests.conftest import Servers
from tests.factories import make_product
from tests.saga_helpers import queued

Body = dict[str, Any]
PRICE = 1250


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(
        db_url,
        servers.redis_url,
        max_lines_per_order=3,
        max_quantity_per_line=10,
        max_body_bytes=4096,
        rate_limit_burst=1000,
    ) as client:
        yield client


def item(body: Body, **changes: Any) -> Body:
    return {**body, "items": [{**body["items"][0], **changes}]}


def address(body: Body, **changes: Any) -> Body:
    return {**body, "shippingAddress": {**body["shippingAddress"], **changes}}


def without(body: Body, field: str) -> Body:
    return {k: v for k, v in body.items() if k != field}


BAD_BODIES: dict[str, Callable[[Body], Any]] = {
    "price as float": lambda b: item(b, price=12.5),
    "price as whole float": lambda b: item(b, price=1250.0),
    "price as string": lambda b: item(b, price="1250"),
    "negative price": lambda b: item(b, price=-1),
    "quantity zero": lambda b: item(b, quantity=0),
    "quantity as string": lambda b: item(b, quantity="1"),
    "quantity as bool": lambda b: item(b, quantity=True),
    "quantity above the limit": lambda b: item(b, quantity=11),
    "product id not a uuid": lambda b: item(b, productId="mug"),
    "no items": lambda b: {**b, "items": []},
    "items not a list": lambda b: {**b, "items": {"a": 1}},
    "more lines than allowed": lambda b: {**b, "items": [{**b["items"][0], "productId": str(uuid.uuid4())}] * 4},
    "the same product twice": lambda b: {**b, "items": b["items"] * 2},
    "lowercase currency": lambda b: {**b, "currency": "usd"},
    "four-letter currency": lambda b: {**b, "currency": "USDT"},
    "card number instead of a token": lambda b: {**b, "paymentMethodId": "4242424242424242"},
    "user id too long": lambda b: {**b, "userId": "u" * 65},
    "blank user id": lambda b: {**b, "userId": "   "},
    "missing user id": lambda b: without(b, "userId"),
    "missing shipping address": lambda b: without(b, "shippingAddress"),
    "NUL in the user id": lambda b: {**b, "userId": "a\x00b"},
    "newline in the user id": lambda b: {**b, "userId": "a\nforged log line"},
    "street too long": lambda b: address(b, street="s" * 201),
    "control character in the street": lambda b: address(b, street="1 Main\x00St"),
    "country not ISO": lambda b: address(b, country="USA"),
    "snake_case key": lambda b: {**without(b, "userId"), "user_id": "x"},
    "unknown field": lambda b: {**b, "discount": 100},
    "body is a list": lambda b: [b],
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_an_invalid_order_body_is_422_validation_error_and_writes_nothing(
    api: TestClient, db_url: str, redis_client: redis.Redis, case: str
) -> None:
    body = BAD_BODIES[case](order_body((make_product(db_url, price_cents=PRICE), 1, PRICE)))
    before = row_counts(db_url)

    error = assert_error(api.post("/v1/orders", json=body, headers=auth(key=new_key())), 422, "VALIDATION_ERROR")

    assert error["details"] and all({"loc", "msg", "type"} <= set(d) for d in error["details"])
    assert row_counts(db_url) == before
    assert queued(redis_client, "stock") == []


def test_a_price_that_differs_from_the_catalogue_is_price_mismatch_with_both_prices(
    api: TestClient, db_url: str
) -> None:
    mug, tea = make_product(db_url, price_cents=1250), make_product(db_url, price_cents=399)
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=order_body((mug, 1, 1250), (tea, 1, 1)), headers=auth(key=new_key()))

    error = assert_error(response, 422, "PRICE_MISMATCH")
    assert error["details"] == {"items": [{"productId": str(tea), "price": 1, "catalogPrice": 399}]}
    assert row_counts(db_url) == before


def test_an_unknown_product_is_422_product_not_found_naming_it(api: TestClient, db_url: str) -> None:
    mug, ghost = make_product(db_url), uuid.uuid4()
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=order_body((mug, 1, 1250), (ghost, 1, 100)), headers=auth(key=new_key()))

    assert assert_error(response, 422, "PRODUCT_NOT_FOUND")["details"] == {"productIds": [str(ghost)]}
    assert row_counts(db_url) == before


def test_an_order_in_another_currency_than_its_products_is_currency_mismatch(api: TestClient, db_url: str) -> None:
    euro_mug = make_product(db_url, currency="EUR")
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=order_body((euro_mug, 1, 1250)), headers=auth(key=new_key()))

    assert assert_error(response, 422, "CURRENCY_MISMATCH")["details"]["currency"] == "USD"
    assert row_counts(db_url) == before
    eur = api.post("/v1/orders", json=order_body((euro_mug, 1, 1250), currency="EUR"), headers=auth(key=new_key()))
    assert eur.status_code == 201 and eur.json()["currency"] == "EUR"


@pytest.mark.parametrize(
    "content, content_type, status, code",
    [
        ("{not json", "application/json", 400, "MALFORMED_JSON"),
        ('{"userId": ', "application/json", 400, "MALFORMED_JSON"),
        (b"\xff\xfe", "application/json", 400, "MALFORMED_JSON"),
        ("", "application/json", 422, "VALIDATION_ERROR"),
        ('{"userId": "x"}', "text/plain", 422, "VALIDATION_ERROR"),
        ('{"userId": "x"}', None, 422, "VALIDATION_ERROR"),
    ],
)
def test_a_body_that_is_not_json_is_400_one_that_is_not_an_order_422_and_neither_writes(
    api: TestClient, db_url: str, content: str | bytes, content_type: str | None, status: int, code: str
) -> None:
    before = row_counts(db_url)
    headers = auth(key=new_key()) | ({"Content-Type": content_type} if content_type else {})

    assert_error(api.post("/v1/orders", content=content, headers=headers), status, code)

    assert row_counts(db_url) == before


def test_a_body_over_the_size_limit_is_413_before_anything_is_parsed(api: TestClient, db_url: str) -> None:
    body = order_body((make_product(db_url), 1, PRICE), userId="x" * 5000)
    before = row_counts(db_url)

    error = assert_error(api.post("/v1/orders", json=body, headers=auth(key=new_key())), 413, "PAYLOAD_TOO_LARGE")

    assert error["details"] == {"maxBytes": 4096}
    assert row_counts(db_url) == before


def test_a_chunked_body_over_the_size_limit_is_413_too(api: TestClient) -> None:
    chunks = iter([b"[" + b"1," * 1500, b"1," * 1500 + b"1]"])

    response = api.post(
        "/v1/orders", content=chunks, headers=auth(key=new_key()) | {"Content-Type": "application/json"}
    )

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_unknown_routes_are_404_and_wrong_methods_405_as_json(api: TestClient) -> None:
    assert_error(api.get("/v1/nothing-here", headers=auth()), 404, "NOT_FOUND")
    assert_error(api.get("/"), 404, "NOT_FOUND")
    response = api.delete("/v1/orders", headers=auth())
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "GET, POST"

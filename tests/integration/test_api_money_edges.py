"""Totals the payment provider would refuse are refused at intake, on the catalogue-priced total, writing nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api_helpers import api_client, assert_error, auth, new_key, order_body, row_counts
from tests.conftest import Servers
from tests.factories import make_product
from tests.saga_helpers import queued


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, rate_limit_burst=1000) as client:
        yield client


@pytest.mark.parametrize(
    "currency, unit_price, quantity, minimum",
    [
        ("USD", 0, 1, 50),
        ("USD", 49, 1, 50),
        ("USD", 12, 4, 50),
        ("EUR", 49, 1, 50),
        ("GBP", 29, 1, 30),
        ("JPY", 49, 1, 50),
        ("MXN", 999, 1, 1000),
        ("HUF", 17499, 1, 17500),
        ("SEK", 299, 1, 300),
        ("ZAR", 49, 1, 50),  # not in Stripe's table: the fallback minimum
    ],
)
def test_an_order_whose_priced_total_is_under_the_minimum_charge_is_422_amount_too_small_and_writes_nothing(
    api: TestClient,
    db_url: str,
    redis_client: redis.Redis,
    currency: str,
    unit_price: int,
    quantity: int,
    minimum: int,
) -> None:
    product = make_product(db_url, price_cents=unit_price, currency=currency)
    body = order_body((product, quantity, unit_price), currency=currency)
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))

    error = assert_error(response, 422, "AMOUNT_TOO_SMALL")
    assert error["details"] == {"minimumAmount": minimum, "currency": currency, "totalAmount": unit_price * quantity}
    assert str(minimum) in error["message"] and currency in error["message"]
    assert row_counts(db_url) == before  # no order, no lines, no idempotency key row
    assert queued(redis_client, "stock") == []


@pytest.mark.parametrize("currency, minimum", [("USD", 50), ("GBP", 30), ("JPY", 50), ("DKK", 250), ("HUF", 17500)])
def test_an_order_totalling_exactly_the_minimum_charge_is_accepted(
    api: TestClient, db_url: str, currency: str, minimum: int
) -> None:
    product = make_product(db_url, price_cents=minimum, currency=currency)

    response = api.post(
        "/v1/orders", json=order_body((product, 1, minimum), currency=currency), headers=auth(key=new_key())
    )

    assert response.status_code == 201, response.text
    assert response.json()["totalAmount"] == minimum


def test_the_minimum_applies_to_the_whole_priced_total_not_to_each_line(api: TestClient, db_url: str) -> None:
    sticker, pin = make_product(db_url, price_cents=20), make_product(db_url, price_cents=10)

    response = api.post("/v1/orders", json=order_body((sticker, 2, 20), (pin, 1, 10)), headers=auth(key=new_key()))

    assert response.status_code == 201, response.text
    assert response.json()["totalAmount"] == 50


def test_a_refused_small_order_leaves_its_idempotency_key_free_for_the_corrected_order(
    api: TestClient, db_url: str
) -> None:
    free, mug, key = make_product(db_url, price_cents=0), make_product(db_url, price_cents=1250), new_key()

    refused = api.post("/v1/orders", json=order_body((free, 1, 0)), headers=auth(key=key))
    corrected = api.post("/v1/orders", json=order_body((free, 1, 0), (mug, 1, 1250)), headers=auth(key=key))

    assert_error(refused, 422, "AMOUNT_TOO_SMALL")
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["totalAmount"] == 1250
    assert row_counts(db_url)["idempotency_keys"] == 1


def test_the_order_route_documents_amount_too_small_among_its_422_answers(api: TestClient) -> None:
    responses = api.get("/openapi.json").json()["paths"]["/v1/orders"]["post"]["responses"]

    assert "AMOUNT_TOO_SMALL" in responses["422"]["description"]
    assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}

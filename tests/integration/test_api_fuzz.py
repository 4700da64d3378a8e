"""Property tests: whatever a client sends, the API answers below 500 with a well-formed error, and writes nothing
unless it accepted the request."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_helpers import api_client, auth, new_key, order_body, row_counts
from tests.conftest import Servers
from tests.factories import make_product

FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.sampled_from(["", " ", "\x00", "\u0000x", "USD", "pm_card_visa", "1e309", str(uuid.uuid4()), "x" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ORDER_KEYS = ["userId", "items", "shippingAddress", "paymentMethodId", "currency"]
ITEM_KEYS = ["productId", "quantity", "price"]
ADDRESS_KEYS = ["street", "city", "state", "zipCode", "country"]


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, rate_limit_burst=100_000, rate_limit_per_s=10_000) as client:
        # Let the async pool open its connection now: psycopg_pool draws from the global `random` when it adds
        # one, and Hypothesis fails a test whose strategies see that state move under them.
        assert client.get("/v1/orders", headers=auth()).status_code == 200
        yield client


def assert_well_formed(response: Any, accepted: tuple[int, ...] = ()) -> None:
    """No 5xx; any error is JSON with a code and a message."""
    assert response.status_code < 500, response.text
    if response.status_code in accepted:
        return
    assert response.status_code >= 400, response.text
    body = response.json()
    assert isinstance(body["code"], str) and body["code"].isupper()
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"code", "message", "details"}


@st.composite
def mutated_orders(draw: st.DrawFn, product: uuid.UUID) -> dict[str, Any]:
    """A valid order with one field (top level, in the line, or in the address) replaced or removed."""
    body = order_body((product, 1, 1250))
    target = draw(st.sampled_from(["order", "item", "address"]))
    where: dict[str, Any] = {"order": body, "item": body["items"][0], "address": body["shippingAddress"]}[target]
    keys = {"order": ORDER_KEYS, "item": ITEM_KEYS, "address": ADDRESS_KEYS}[target]
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()):
        where[key] = draw(json_values)
    else:
        where.pop(key, None)
    return body


@given(data=st.data())
@FUZZ
def test_an_order_body_with_any_one_field_mangled_never_causes_a_5xx(
    api: TestClient, db_url: str, data: st.DataObject
) -> None:
    product = make_product(db_url)
    before = row_counts(db_url)
    body = data.draw(mutated_orders(product))

    response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))

    assert_well_formed(response, accepted=(201,))
    if response.status_code != 201:
        assert row_counts(db_url) == before


@given(body=json_values)
@FUZZ
def test_any_json_document_as_an_order_never_causes_a_5xx_or_a_row(api: TestClient, db_url: str, body: Any) -> None:
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))

    assert_well_formed(response)
    assert row_counts(db_url) == before


@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", "x/y; a=b"]))
@FUZZ
def test_any_bytes_as_a_body_never_cause_a_5xx(api: TestClient, raw: bytes, content_type: str) -> None:
    headers = auth(key=new_key()) | {"Content-Type": content_type}

    assert_well_formed(api.post("/v1/orders", content=raw, headers=headers))
    assert_well_formed(api.post("/v1/products", content=raw, headers=auth("admin") | {"Content-Type": content_type}))


@given(body=json_values, sku=st.text(max_size=70), name=json_values)
@FUZZ
def test_any_product_or_stock_document_never_causes_a_5xx(api: TestClient, body: Any, sku: str, name: Any) -> None:
    product = {"sku": sku, "name": name, "price": 100, "currency": "USD", "stock": 1}

    assert_well_formed(api.post("/v1/products", json=product, headers=auth("admin")), accepted=(201,))
    assert_well_formed(api.post("/v1/products", json=body, headers=auth("admin")), accepted=(201,))
    assert_well_formed(api.put(f"/v1/products/{uuid.uuid4()}/stock", json=body, headers=auth("admin")))


params = st.dictionaries(
    st.sampled_from(["limit", "offset", "status", "userId", "other"]),
    st.one_of(st.text(max_size=30), st.integers(min_value=-(2**70), max_value=2**70).map(str)),
    max_size=5,
)


@given(query=params, path=st.text(max_size=40))
@FUZZ
def test_any_query_or_path_on_the_read_routes_never_causes_a_5xx(
    api: TestClient, query: dict[str, str], path: str
) -> None:
    assert_well_formed(api.get("/v1/orders", params=query, headers=auth()), accepted=(200,))
    assert_well_formed(api.get("/v1/products", params=query, headers=auth()), accepted=(200,))
    quoted = json.dumps(path)[1:-1].replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
    assert_well_formed(api.get(f"/v1/orders/{quoted}", headers=auth()), accepted=(200,))  # "" redirects to the list

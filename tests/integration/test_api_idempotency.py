"""Idempotency-Key on POST /v1/orders: required, replayed, refused when reused, and race-safe."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

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


def test_a_post_without_an_idempotency_key_is_400_and_writes_nothing(api: TestClient, db_url: str) -> None:
    body = order_body((make_product(db_url), 1, 1250))
    before = row_counts(db_url)

    assert_error(api.post("/v1/orders", json=body, headers=auth()), 400, "IDEMPOTENCY_KEY_REQUIRED")

    assert row_counts(db_url) == before


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\tkey"])
def test_an_idempotency_key_that_is_too_long_or_not_visible_ascii_is_422(
    api: TestClient, db_url: str, key: str
) -> None:
    body = order_body((make_product(db_url), 1, 1250))

    assert_error(api.post("/v1/orders", json=body, headers=auth(key=key)), 422, "VALIDATION_ERROR")


def test_the_same_key_and_body_replay_the_original_answer_without_a_second_order(
    api: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    body, key = order_body((make_product(db_url), 2, 1250)), new_key()
    first = api.post("/v1/orders", json=body, headers=auth(key=key))

    again = api.post("/v1/orders", json=body, headers=auth(key=key))

    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json() == first.json()
    assert row_counts(db_url)["orders"] == 1
    assert len(queued(redis_client, "stock")) == 1


def test_a_replay_matches_the_body_by_content_not_by_key_order_or_spacing(api: TestClient, db_url: str) -> None:
    body, key = order_body((make_product(db_url), 1, 1250)), new_key()
    first = api.post("/v1/orders", json=body, headers=auth(key=key))
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)

    again = api.post("/v1/orders", content=reordered, headers=auth(key=key) | {"Content-Type": "application/json"})

    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_the_same_key_with_a_different_body_is_409_and_writes_nothing(api: TestClient, db_url: str) -> None:
    product, key = make_product(db_url), new_key()
    first = api.post("/v1/orders", json=order_body((product, 1, 1250), user="dave"), headers=auth(key=key))
    before = row_counts(db_url)

    reused = api.post("/v1/orders", json=order_body((product, 5, 1250), user="dave"), headers=auth(key=key))

    body = assert_error(reused, 409, "IDEMPOTENCY_KEY_REUSED")
    assert body["details"]["orderId"] == first.json()["id"]
    assert row_counts(db_url) == before


@pytest.mark.parametrize("problem", ["unknown product", "wrong price"])
def test_a_used_key_answers_409_even_when_the_new_body_would_be_refused_422(
    api: TestClient, db_url: str, problem: str
) -> None:
    product, key = make_product(db_url, price_cents=1250), new_key()
    first = api.post("/v1/orders", json=order_body((product, 1, 1250)), headers=auth(key=key))
    line = (uuid.uuid4(), 1, 1250) if problem == "unknown product" else (product, 1, 999)

    reused = api.post("/v1/orders", json=order_body(line), headers=auth(key=key))

    body = assert_error(reused, 409, "IDEMPOTENCY_KEY_REUSED")
    assert body["details"]["orderId"] == first.json()["id"]


def test_keys_belong_to_one_client_so_two_clients_may_use_the_same_key(api: TestClient, db_url: str) -> None:
    body, key = order_body((make_product(db_url), 1, 1250)), new_key()

    shop_1 = api.post("/v1/orders", json=body, headers=auth(client="shop-1", key=key))
    shop_2 = api.post("/v1/orders", json=body, headers=auth(client="shop-2", key=key))

    assert shop_1.status_code == shop_2.status_code == 201
    assert shop_1.json()["id"] != shop_2.json()["id"]


def test_twenty_concurrent_posts_with_one_key_create_exactly_one_order(
    api: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    body, key = order_body((make_product(db_url), 1, 1250)), new_key()
    headers = auth(key=key)
    start = Barrier(20)

    def post(_: int) -> tuple[int, str, str | None]:
        start.wait()
        response = api.post("/v1/orders", json=body, headers=headers)
        return response.status_code, response.json()["id"], response.headers.get("Idempotent-Replayed")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))

    assert sorted(status for status, _, _ in results) == [200] * 19 + [201]
    assert len({order_id for _, order_id, _ in results}) == 1
    assert sum(replayed == "true" for _, _, replayed in results) == 19
    counts = row_counts(db_url)
    assert (counts["orders"], counts["order_lines"], counts["idempotency_keys"]) == (1, 1, 1)
    assert len(queued(redis_client, "stock")) == 1


def test_a_rejected_request_does_not_burn_its_key(api: TestClient, db_url: str) -> None:
    product, key = make_product(db_url, price_cents=1250), new_key()
    wrong = api.post("/v1/orders", json=order_body((product, 1, 999)), headers=auth(key=key))

    fixed = api.post("/v1/orders", json=order_body((product, 1, 1250)), headers=auth(key=key))

    assert_error(wrong, 422, "PRICE_MISMATCH")
    assert fixed.status_code == 201

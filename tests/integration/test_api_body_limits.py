"""Request body limits: Stripe's webhook events get room for their size, every other route keeps the small cap."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from api.app import create_app
from models.db import unit_of_work
from tests.api_helpers import api_settings, assert_error, auth, new_key, order_body, row_counts
from tests.conftest import Servers
from tests.factories import make_order, make_product

SECRET = f"whsec_{secrets.token_hex(16)}"
HOOK = "/v1/webhooks/stripe"
KIB, MIB = 1024, 1024 * 1024


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    """The API with default limits and a webhook signing secret."""
    settings = api_settings(db_url, servers.redis_url, stripe_webhook_secret=SecretStr(SECRET), rate_limit_burst=1000)
    with TestClient(create_app(settings)) as client:
        yield client


def signed(payload: str) -> dict[str, str]:
    """Headers as Stripe sends them: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`."""
    now = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{now}.{payload}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={now},v1={digest}"}


def succeeded_event(order_id: uuid.UUID, intent_id: str, size: int) -> str:
    """A payment_intent.succeeded event padded to about `size` bytes with charge history, as large intents carry."""
    charge = {"id": "ch_x", "object": "charge", "description": "d" * 900, "outcome": {"type": "authorized"}}
    intent: dict[str, Any] = {"id": intent_id, "object": "payment_intent", "metadata": {"order_id": str(order_id)}}
    intent["charges"] = {"object": "list", "data": [charge] * (size // (len(json.dumps(charge)) + 2))}
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": intent},
        }
    )


def in_doubt_payment(db_url: str) -> uuid.UUID:
    order_id = make_order(db_url, [(make_product(db_url), 2)])
    with unit_of_work(db_url) as session:
        session.execute(
            text(
                "INSERT INTO payments (order_id, idempotency_key, amount_cents, currency, status)"
                " VALUES (:order, :key, 2500, 'USD', 'in_doubt')"
            ),
            {"order": order_id, "key": f"{order_id}:charge_payment"},
        )
    return order_id


def payment_status(db_url: str, order_id: uuid.UUID) -> str:
    with unit_of_work(db_url) as session:
        return str(session.scalar(text("SELECT status FROM payments WHERE order_id = :id"), {"id": order_id}))


def test_a_signed_stripe_event_of_300_kb_is_accepted_and_applied(api: TestClient, db_url: str) -> None:
    order_id, intent_id = in_doubt_payment(db_url), f"pi_{uuid.uuid4().hex}"
    payload = succeeded_event(order_id, intent_id, 300 * KIB)
    assert 300 * KIB - 2 * KIB < len(payload) < 300 * KIB + 2 * KIB

    response = api.post(HOOK, content=payload, headers=signed(payload))

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    assert payment_status(db_url, order_id) == "succeeded"


def test_a_stripe_event_of_2_mib_is_413_as_json_and_records_nothing(api: TestClient, db_url: str) -> None:
    order_id = in_doubt_payment(db_url)
    payload = succeeded_event(order_id, f"pi_{uuid.uuid4().hex}", 2 * MIB)
    before = row_counts(db_url)

    response = api.post(HOOK, content=payload, headers=signed(payload))

    assert assert_error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"maxBytes": MIB}
    assert row_counts(db_url) == before
    assert payment_status(db_url, order_id) == "in_doubt"


def test_a_chunked_stripe_event_over_the_webhook_limit_is_413_too(api: TestClient) -> None:
    chunks = iter([b'{"pad": "' + b"x" * (MIB // 2), b"x" * (MIB // 2), b'"}'])

    response = api.post(HOOK, content=chunks, headers={"Content-Type": "application/json", "Stripe-Signature": "t=1"})

    assert assert_error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"maxBytes": MIB}


def test_an_order_body_of_100_kib_is_still_413_at_the_general_limit(api: TestClient, db_url: str) -> None:
    body = order_body((make_product(db_url), 1, 1250), userId="u" * (100 * KIB))
    before = row_counts(db_url)

    response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))

    assert assert_error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"maxBytes": 64 * KIB}
    assert row_counts(db_url) == before


def test_a_path_that_only_starts_like_the_webhook_prefix_keeps_the_general_limit(api: TestClient) -> None:
    response = api.post("/v1/webhooksx", content=b"x" * (100 * KIB), headers={"Content-Type": "application/json"})

    assert assert_error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"maxBytes": 64 * KIB}


def test_the_webhook_limit_follows_its_setting(servers: Servers, db_url: str) -> None:
    settings = api_settings(
        db_url, servers.redis_url, stripe_webhook_secret=SecretStr(SECRET), max_webhook_body_bytes=8 * KIB
    )
    payload = succeeded_event(uuid.uuid4(), "pi_x", 16 * KIB)

    with TestClient(create_app(settings)) as client:
        response = client.post(HOOK, content=payload, headers=signed(payload))

    assert assert_error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"maxBytes": 8 * KIB}

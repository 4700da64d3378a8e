"""Shared pieces of the API tests: an app on the test servers, tokens, catalogue rows, and what got written."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from api.app import create_app
from api.auth import mint_token
from models.db import unit_of_work
from models.tables import Base
from pipeline.config import Settings
from tests.factories import GOOD_ADDRESS, random_user
from workers.enqueue import start_saga

SECRET = secrets.token_urlsafe(32)
OLD_SECRET = secrets.token_urlsafe(32)  # still accepted: a key being rotated out
ALL_SCOPES = ("orders:read", "orders:write")


def api_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for an app on the test servers, signing with SECRET and still accepting OLD_SECRET."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_secrets": [SecretStr(SECRET), SecretStr(OLD_SECRET)],
        "log_format": "console",
        "log_level": "WARNING",
        "api_metrics_port": 0,  # many apps per test process; the metrics tests pick a free port
    }
    return Settings(**{**values, **overrides})


@contextmanager
def api_client(
    database_url: str,
    redis_url: str,
    enqueue: Callable[[str], None] = start_saga,
    address: str = "testclient",
    **overrides: Any,
) -> Iterator[TestClient]:
    """A TestClient of a fresh app (lifespan run) whose requests come from `address`, closed on exit."""
    app = create_app(api_settings(database_url, redis_url, **overrides), enqueue=enqueue)
    with TestClient(app, client=(address, 50000)) as client:
        yield client


def token(*scopes: str, client: str = "shop-1", secret: str = SECRET, ttl: int = 600) -> str:
    return mint_token(secret, client, list(scopes or ALL_SCOPES), ttl)


def auth(*scopes: str, client: str = "shop-1", key: str | None = None) -> dict[str, str]:
    """Headers with a bearer token for the scopes (orders:read + orders:write by default) and an optional key."""
    headers = {"Authorization": f"Bearer {token(*scopes, client=client)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def order_body(*lines: tuple[uuid.UUID, int, int], user: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid order document for (productId, quantity, price) lines."""
    body: dict[str, Any] = {
        "userId": user or random_user(),
        "items": [{"productId": str(p), "quantity": q, "price": price} for p, q, price in lines],
        "shippingAddress": dict(GOOD_ADDRESS),  # a copy: tests edit it
        "paymentMethodId": "pm_card_visa",
    }
    return {**body, **overrides}


def row_counts(database_url: str) -> dict[str, int]:
    """The number of rows in every table."""
    with unit_of_work(database_url) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body

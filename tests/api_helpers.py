"""Shared pieces of the API tests: an app on the test servers, tokens, catalogue rows, and what got written."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from api.app import create_app
from api.auth import mint_token
from models.db import unit_of_work
from models.inventory import Product
from models.tables import Base
from pipeline.config import Settings
from tests.factories import random_sku, random_user
from workers.dispatch import start_saga

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
    }
    return Settings(**{**values, **overrides})


@contextmanager
def api_client(
    database_url: str, redis_url: str, enqueue: Callable[[str], None] = start_saga, **overrides: Any
) -> Iterator[TestClient]:
    """A TestClient of a fresh app (lifespan run), closed on exit."""
    app = create_app(api_settings(database_url, redis_url, **overrides), enqueue=enqueue)
    with TestClient(app) as client:
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


def add_product(database_url: str, price: int = 1250, currency: str = "USD", stock: int = 100) -> uuid.UUID:
    """A catalogue row; returns its id."""
    with unit_of_work(database_url) as session:
        product = Product(
            sku=random_sku("api"), name="mug", price_cents=price, currency=currency,
            total=stock, available=stock, reserved=0, shipped=0,
        )  # fmt: skip
        session.add(product)
        session.flush()
        return product.id


def order_body(*lines: tuple[uuid.UUID, int, int], user: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid order document for (productId, quantity, price) lines."""
    body: dict[str, Any] = {
        "userId": user or random_user(),
        "items": [{"productId": str(p), "quantity": q, "price": price} for p, q, price in lines],
        "shippingAddress": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701",
                            "country": "US"},
        "paymentMethodId": "pm_card_visa",
    }  # fmt: skip
    return {**body, **overrides}


def row_counts(database_url: str) -> dict[str, int]:
    """The number of rows in every table."""
    with unit_of_work(database_url) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The messages waiting on a Dramatiq queue in namespace orderflow, oldest first, decoded."""
    ids = client.lrange(f"orderflow:{queue}", 0, -1)
    raw = [client.hget(f"orderflow:{queue}.msgs", message_id) for message_id in ids]
    return [json.loads(item) for item in raw if item is not None]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body

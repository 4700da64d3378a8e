"""Placing an order: limits, catalogue pricing, the minimum charge and the idempotency ledger, in one transaction.

Plain SQL on the intake's async psycopg pool (api/database.py), four round trips on the happy path: BEGIN,
one SELECT (the catalogue prices and the transaction's clock), one INSERT statement (key row, order and
lines together, by `pipeline.order_store.place_order`, the orders' one writer), COMMIT. The key row's
primary key (client, key) decides races: its INSERT ... ON CONFLICT DO NOTHING waits for a concurrent
duplicate to commit or roll back, and the order and lines are inserted only from the key row it returns.
A request whose key exists writes nothing and replays that key's answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.charge_minimums import minimum_charge
from api.errors import ApiError
from api.intake_sql import KEY_ROW, PRICES
from api.views import placed_order_out
from models.schemas import OrderCreate
from pipeline import order_store
from pipeline.config import Settings


@dataclass(frozen=True)
class Placed:
    """The answer to a POST /v1/orders: a new order (201) or the replay of an earlier one (200)."""

    status: int
    body: dict[str, Any]
    order_id: uuid.UUID
    replayed: bool


class StoredKey(NamedTuple):
    """What an Idempotency-Key row remembers of the request that first used it."""

    request_hash: str
    order_id: uuid.UUID | None
    response_body: dict[str, Any]


class Line(NamedTuple):
    """One order line at its catalogue price."""

    product_id: uuid.UUID
    quantity: int
    unit_price_cents: int


def check_limits(body: OrderCreate, settings: Settings) -> None:
    """Reject orders with more lines or larger quantities than the settings allow (422 VALIDATION_ERROR)."""
    problems: list[dict[str, Any]] = []
    if len(body.items) > settings.max_lines_per_order:
        problems.append(_problem(["body", "items"], f"at most {settings.max_lines_per_order} lines per order"))
    for index, item in enumerate(body.items):
        if item.quantity > settings.max_quantity_per_line:
            where = ["body", "items", str(index), "quantity"]
            problems.append(_problem(where, f"at most {settings.max_quantity_per_line} units per line"))
    if problems:
        raise ApiError(422, "VALIDATION_ERROR", "the request is invalid", problems)


def request_hash(body: OrderCreate) -> str:
    """sha256 of the validated body as canonical JSON (sorted keys, no spaces, defaults filled in).

    A body without `email` hashes as it did before the field existed, so a retry across that upgrade replays.
    """
    document = body.model_dump(mode="json", by_alias=True)
    if document.get("email") is None:
        del document["email"]
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def place_order(
    pool: AsyncConnectionPool, client_id: str, key: str, body: OrderCreate, lease_s: float, order_id: uuid.UUID
) -> Placed:
    """Write a new pending order (as order_id) for this key, or replay what the key answered before."""
    digest = request_hash(body)
    async with pool.connection() as connection:
        try:
            placed = await insert_new(connection, client_id, key, digest, body, lease_s, order_id)
        except ApiError:
            stored = await find_key(connection, client_id, key)
            if stored is None:
                raise
            return replay(stored, key, digest)  # a used key replays (or 409s) whatever the new body names
        if placed is not None:
            return placed
        # The key was there already, or a concurrent duplicate committed first.
        stored = await find_key(connection, client_id, key)
        if stored is None:
            raise RuntimeError(f"idempotency key {key!r} conflicted but cannot be read back")
        return replay(stored, key, digest)


async def insert_new(
    connection: AsyncConnection,
    client_id: str,
    key: str,
    digest: str,
    body: OrderCreate,
    lease_s: float,
    order_id: uuid.UUID,
) -> Placed | None:
    """The new order, priced and written in one transaction; None if the key row exists (nothing is written)."""
    async with connection.transaction():
        now, catalogue = await prices(connection, body)
        lines = priced_lines(body, catalogue)
        check_chargeable(body.currency, lines)
        assert now is not None  # priced lines come from at least one catalogue row
        document = placed_order_out(order_id, body, lines, now).model_dump(mode="json")
        inserted = await order_store.place_order(
            connection,
            client_id=client_id,
            key=key,
            request_hash=digest,
            order_id=order_id,
            response_body=document,
            user_id=body.user_id,
            currency=body.currency,
            total_cents=document["totalAmount"],
            payment_method_id=body.payment_method_id,
            shipping_address=document["shippingAddress"],
            customer_email=body.email,
            lines=lines,
            created_at=now,
            lease_s=lease_s,
        )
    return Placed(201, document, order_id, replayed=False) if inserted else None


async def prices(
    connection: AsyncConnection, body: OrderCreate
) -> tuple[datetime | None, dict[uuid.UUID, tuple[int, str]]]:
    """The transaction's clock and (price, currency) of each catalogue product the order names."""
    cursor = await connection.execute(PRICES, {"ids": [item.product_id for item in body.items]})
    rows = await cursor.fetchall()
    return (rows[0][3] if rows else None), {row[0]: (row[1], row[2]) for row in rows}


def priced_lines(body: OrderCreate, catalogue: dict[uuid.UUID, tuple[int, str]]) -> list[Line]:
    """Order lines at catalogue prices; 422 if a product is unknown, in another currency, or priced differently."""
    missing = [str(item.product_id) for item in body.items if item.product_id not in catalogue]
    if missing:
        raise ApiError(
            422, "PRODUCT_NOT_FOUND", "the order names products that are not in the catalogue", {"productIds": missing}
        )
    foreign = [
        {"productId": str(product_id), "currency": currency}
        for product_id, (_, currency) in catalogue.items()
        if currency != body.currency
    ]
    if foreign:
        raise ApiError(
            422,
            "CURRENCY_MISMATCH",
            f"every product must be sold in {body.currency}",
            {"currency": body.currency, "products": foreign},
        )
    wrong = [
        {"productId": str(item.product_id), "price": item.price, "catalogPrice": catalogue[item.product_id][0]}
        for item in body.items
        if item.price != catalogue[item.product_id][0]
    ]
    if wrong:
        raise ApiError(422, "PRICE_MISMATCH", "item prices differ from the catalogue", {"items": wrong})
    return [Line(item.product_id, item.quantity, catalogue[item.product_id][0]) for item in body.items]


def check_chargeable(currency: str, lines: list[Line]) -> None:
    """422 AMOUNT_TOO_SMALL if the priced total is under the provider's minimum charge in the currency."""
    total, minimum = sum(line.quantity * line.unit_price_cents for line in lines), minimum_charge(currency)
    if total < minimum:
        raise ApiError(
            422,
            "AMOUNT_TOO_SMALL",
            f"an order in {currency} must total at least {minimum} minor units",
            {"minimumAmount": minimum, "currency": currency, "totalAmount": total},
        )


async def find_key(connection: AsyncConnection, client_id: str, key: str) -> StoredKey | None:
    cursor = await connection.execute(KEY_ROW, {"client_id": client_id, "key": key})
    row = await cursor.fetchone()
    return None if row is None else StoredKey(*row)


def replay(stored: StoredKey, key: str, digest: str) -> Placed:
    """The stored response if the body is the same as the first time; 409 IDEMPOTENCY_KEY_REUSED otherwise."""
    if stored.request_hash != digest or stored.order_id is None:
        raise ApiError(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request body",
            {"idempotencyKey": key, "orderId": str(stored.order_id)},
        )
    return Placed(200, stored.response_body, stored.order_id, replayed=True)


def _problem(loc: list[str], message: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": "limit_exceeded"}

"""Placing an order: limits, catalogue pricing and the idempotency ledger, written in one transaction.

The order, its lines, its recovery lease and its Idempotency-Key row commit together. The key row's
primary key (client, key) decides races: of concurrent duplicates exactly one commits, the others hit
the key and replay the winner's stored response.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.views import order_out
from models.db import unit_of_work
from models.inventory import Product
from models.orders import Order, OrderLine
from models.saga import IdempotencyKey
from models.schemas import OrderCreate
from models.status import OrderStatus
from pipeline import saga
from pipeline.config import Settings
from pipeline.progress import lease_until

KEY_CONSTRAINT = "pk_idempotency_keys"


@dataclass(frozen=True)
class Placed:
    """The answer to a POST /v1/orders: a new order (201) or the replay of an earlier one (200)."""

    status: int
    body: dict[str, Any]
    order_id: uuid.UUID
    replayed: bool


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
    """sha256 of the validated body as canonical JSON (sorted keys, no spaces, defaults filled in)."""
    canonical = json.dumps(body.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def place_order(database_url: str, client_id: str, key: str, body: OrderCreate, lease_s: float) -> Placed:
    """Write a new pending order for this key, or replay what the key answered before."""
    digest = request_hash(body)
    try:
        with unit_of_work(database_url) as session:
            stored = session.get(IdempotencyKey, (client_id, key))
            if stored is not None:
                return replay(stored, digest)
            return create_order(session, client_id, key, digest, body, lease_s)
    except IntegrityError as error:
        if _constraint(error) != KEY_CONSTRAINT:
            raise
    stored = find_key(database_url, client_id, key)  # a concurrent duplicate committed first
    if stored is None:
        raise RuntimeError(f"idempotency key {key!r} conflicted but cannot be read back")
    return replay(stored, digest)


def find_key(database_url: str, client_id: str, key: str) -> IdempotencyKey | None:
    with unit_of_work(database_url) as session:
        return session.get(IdempotencyKey, (client_id, key))


def replay(stored: IdempotencyKey, digest: str) -> Placed:
    """The stored response if the body is the same as the first time; 409 IDEMPOTENCY_KEY_REUSED otherwise."""
    if stored.request_hash != digest or stored.order_id is None:
        raise ApiError(
            409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request body",
            {"idempotencyKey": stored.key, "orderId": str(stored.order_id)},
        )  # fmt: skip
    return Placed(200, stored.response_body, stored.order_id, replayed=True)


def create_order(session: Session, client_id: str, key: str, digest: str, body: OrderCreate, lease_s: float) -> Placed:
    """Insert the order, its lines and its key row; leased to the saga's first step. The caller commits."""
    lines = priced_lines(session, body)
    order = Order(
        user_id=body.user_id, status=OrderStatus.PENDING.value, currency=body.currency,
        total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
        payment_method_id=body.payment_method_id,
        shipping_address=body.shipping_address.model_dump(mode="json", by_alias=True),
        current_step=saga.FIRST_STEP, lease_expires_at=lease_until(lease_s), lines=lines,
    )  # fmt: skip
    session.add(order)
    session.flush()
    document = order_out(order).model_dump(mode="json")
    session.add(
        IdempotencyKey(
            client_id=client_id, key=key, request_hash=digest, order_id=order.id,
            response_code=201, response_body=document,
        )
    )  # fmt: skip
    session.flush()
    return Placed(201, document, order.id, replayed=False)


def priced_lines(session: Session, body: OrderCreate) -> list[OrderLine]:
    """Order lines at catalogue prices; 422 if a product is unknown, in another currency, or priced differently."""
    wanted = [item.product_id for item in body.items]
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(wanted)))}
    missing = [str(product_id) for product_id in wanted if product_id not in products]
    if missing:
        raise ApiError(422, "PRODUCT_NOT_FOUND", "the order names products that are not in the catalogue",
                       {"productIds": missing})  # fmt: skip
    foreign = [
        {"productId": str(p.id), "currency": p.currency} for p in products.values() if p.currency != body.currency
    ]
    if foreign:
        raise ApiError(422, "CURRENCY_MISMATCH", f"every product must be sold in {body.currency}",
                       {"currency": body.currency, "products": foreign})  # fmt: skip
    wrong = [
        {"productId": str(item.product_id), "price": item.price, "catalogPrice": products[item.product_id].price_cents}
        for item in body.items
        if item.price != products[item.product_id].price_cents
    ]
    if wrong:
        raise ApiError(422, "PRICE_MISMATCH", "item prices differ from the catalogue", {"items": wrong})
    return [
        OrderLine(product_id=item.product_id, line_no=number, quantity=item.quantity,
                  unit_price_cents=products[item.product_id].price_cents)
        for number, item in enumerate(body.items, start=1)
    ]  # fmt: skip


def _problem(loc: list[str], message: str) -> dict[str, Any]:
    return {"loc": loc, "msg": message, "type": "limit_exceeded"}


def _constraint(error: IntegrityError) -> str | None:
    diag = getattr(error.orig, "diag", None)
    return getattr(diag, "constraint_name", None)

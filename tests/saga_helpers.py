"""Watching orders go through the real saga in tests: polling the database and the broker."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import redis
from sqlalchemy import func, select, text
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from models.db import engine_for, unit_of_work
from models.inventory import Product
from models.orders import Order
from models.status import TERMINAL_VALUES


def wait_until_terminal(db_url: str, order_ids: list[uuid.UUID], seconds: float = 60) -> dict[uuid.UUID, Order]:
    """Poll until every order reached shipped, cancelled or needs_attention; return them."""
    for attempt in Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(0.1),
        reraise=True,
        retry=retry_if_exception_type(AssertionError),
    ):
        with attempt, unit_of_work(db_url) as session:
            terminal = Order.id.in_(order_ids), Order.status.in_(TERMINAL_VALUES)
            done = session.scalar(select(func.count()).where(*terminal))
            assert done == len(order_ids), f"{done}/{len(order_ids)} orders terminal"
    with unit_of_work(db_url) as session:
        return {order.id: order for order in session.scalars(select(Order).where(Order.id.in_(order_ids)))}


def stock(db_url: str, product_id: uuid.UUID) -> tuple[int, int, int, int]:
    """(total, available, reserved, shipped)."""
    with unit_of_work(db_url) as session:
        product = session.get_one(Product, product_id)
        return product.total, product.available, product.reserved, product.shipped


def count(db_url: str, sql: str, **params: Any) -> int:
    with engine_for(db_url).connect() as connection:
        return int(connection.execute(text(sql), params).scalar_one())


def timeline(db_url: str, order_id: uuid.UUID) -> list[tuple[str, str]]:
    with engine_for(db_url).connect() as connection:
        rows = connection.execute(
            text("SELECT step, outcome FROM saga_steps WHERE order_id = :id ORDER BY started_at, finished_at"),
            {"id": order_id},
        )
        return [(row[0], row[1]) for row in rows]


def succeeded_charges(ledger: list[dict[str, Any]], order_id: uuid.UUID) -> list[dict[str, Any]]:
    return [i for i in ledger if i["metadata"].get("order_id") == str(order_id) and i["status"] == "succeeded"]


def queued(client: redis.Redis, queue: str) -> list[dramatiq.Message[Any]]:
    """The messages waiting on a Dramatiq queue (namespace orderflow), oldest first."""
    ids = client.lrange(f"orderflow:{queue}", 0, -1)
    encoded = client.hmget(f"orderflow:{queue}.msgs", ids) if ids else []
    return [dramatiq.Message.decode(data) for data in encoded if isinstance(data, bytes)]

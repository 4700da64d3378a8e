"""Driving one order step by step against the real providers, for the provider-edge tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from models.db import engine_for
from pipeline.adapters import Adapters
from pipeline.carrier import HttpCarrier
from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from pipeline.local_providers import LocalRecorder
from pipeline.notify import LocalNotifier, Notifier
from pipeline.payments import StripePayments
from workers.saga.runner import run_action, run_compensation

OPENED: list[Adapters] = []


def close_opened() -> None:
    """Close the HTTP clients of every adapter set made by `adapters_for` (a fixture calls this after each test)."""
    while OPENED:
        adapters = OPENED.pop()
        adapters.payments.close()
        adapters.carrier.close()


def adapters_for(
    db_url: str,
    stripe_url: str,
    carrier_url: str,
    timeout_s: float = 2.0,
    notifier: Notifier | None = None,
    **keys: str,
) -> Adapters:
    """Adapters on the test servers (the local notifier unless given one); a short timeout makes lost answers quick."""
    adapters = Adapters(
        database_url=db_url,
        payments=StripePayments(keys.get("stripe_key", LOCAL_STRIPE_KEY), stripe_url, timeout_s),
        notifier=notifier or LocalNotifier(LocalRecorder(db_url, "notifier")),
        carrier=HttpCarrier(carrier_url, LOCAL_CARRIER_KEY, timeout_s),
        lease_s=20.0,
    )
    OPENED.append(adapters)
    return adapters


def run_steps(order_id: uuid.UUID, adapters: Adapters, *steps: str) -> None:
    """Run forward steps in order, in this process (the messages they send go to Redis, unconsumed)."""
    for step in steps:
        run_action(step, str(order_id), adapters)


def run_undos(order_id: uuid.UUID, adapters: Adapters) -> None:
    """Run the order's compensations in this process until it leaves `compensating`."""
    for _ in range(10):
        row = one(adapters.database_url, "SELECT status, current_step FROM orders WHERE id = :id", id=order_id)
        if row["status"] != "compensating":
            return
        run_compensation(row["current_step"], str(order_id), adapters)


def one(db_url: str, sql: str, **params: Any) -> dict[str, Any]:
    with engine_for(db_url).connect() as connection:
        return dict(connection.execute(text(sql), params).mappings().one())


def rows(db_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine_for(db_url).connect() as connection:
        return [dict(row) for row in connection.execute(text(sql), params).mappings()]


def order_row(db_url: str, order_id: uuid.UUID) -> dict[str, Any]:
    return one(db_url, "SELECT status, cancel_reason, current_step, last_error FROM orders WHERE id = :id", id=order_id)


def payment_row(db_url: str, order_id: uuid.UUID) -> dict[str, Any]:
    sql = "SELECT status, intent_id, refunded_cents, dispute_status FROM payments WHERE order_id = :id"
    return one(db_url, sql, id=order_id)


def intent_of(ledger: list[dict[str, Any]], order_id: uuid.UUID) -> dict[str, Any]:
    """The order's one real intent at the provider (probe placeholders excluded)."""
    [intent] = [
        i for i in ledger if i["metadata"].get("order_id") == str(order_id) and i["metadata"].get("probe") != "true"
    ]
    return intent

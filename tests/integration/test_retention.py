"""Retention: rows past their age go, oldest first and in batches; none a transaction holds, no event still owed."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import text

from models.db import engine_for
from pipeline import metrics
from pipeline.config import Settings
from tests.factories import make_order, make_product
from workers.retention import retention_pass

DAY = 86400.0


def execute(db_url: str, statement: str, **parameters: Any) -> None:
    with engine_for(db_url).begin() as connection:
        connection.execute(text(statement), parameters)


def count(db_url: str, table: str) -> int:
    with engine_for(db_url).connect() as connection:
        return int(connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def settings(db_url: str, **changes: Any) -> Settings:
    return Settings(database_url=db_url, **changes)


def aged(db_url: str, table: str, column: str, days: float, rows: int, **values: str) -> None:
    """`rows` rows of `table` made `days` old (values: SQL for the other columns, {n} numbered)."""
    names = ", ".join(values)
    select = ", ".join(expression for expression in values.values())
    execute(
        db_url,
        f"INSERT INTO {table} ({names}, {column}) SELECT {select}, now() - make_interval(days => :days) "
        "FROM generate_series(1, :rows) AS n",
        days=days,
        rows=rows,
    )


def test_rows_past_their_age_are_deleted_in_batches_and_younger_ones_stay(db_url: str) -> None:
    aged(db_url, "webhook_events", "received_at", 40, 1_200, id="'evt_old_' || n", type="'charge.refunded'")
    aged(db_url, "webhook_events", "received_at", 2, 30, id="'evt_new_' || n", type="'charge.refunded'")
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    key = {"client_id": "'shop-1'", "key": "'k-' || n", "request_hash": "'h'", "order_id": f"'{order_id}'"}
    aged(db_url, "idempotency_keys", "created_at", 2, 7, **key, response_code="201", response_body="'{}'")
    before = metrics.RETENTION_PRUNED.labels("webhook_events")._value.get()

    pruned = retention_pass(settings(db_url, retention_batch=500))

    assert pruned["webhook_events"] == 1_200  # three batches: 500, 500, 200
    assert pruned["idempotency_keys"] == 7  # two days old, past 24 h
    assert count(db_url, "webhook_events") == 30
    assert metrics.RETENTION_PRUNED.labels("webhook_events")._value.get() - before == 1_200
    assert 2 * DAY - 60 < metrics.RETENTION_OLDEST_AGE.labels("webhook_events")._value.get() < 2 * DAY + 60
    assert metrics.RETENTION_TTL.labels("idempotency_keys")._value.get() == DAY


def test_an_age_of_zero_keeps_a_table_for_ever(db_url: str) -> None:
    aged(db_url, "webhook_events", "received_at", 400, 5, id="'evt_' || n", type="'charge.refunded'")

    pruned = retention_pass(settings(db_url, stripe_event_ttl_s=0))

    assert "webhook_events" not in pruned and count(db_url, "webhook_events") == 5


def test_an_order_event_still_owed_to_an_endpoint_stays_and_a_delivered_one_goes_with_its_deliveries(
    db_url: str,
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    endpoint = uuid.uuid4()
    execute(
        db_url,
        "INSERT INTO webhook_endpoints (id, client_id, url, secret) VALUES (:id, 'shop-1', 'https://x.test', 's')",
        id=endpoint,
    )
    for sequence, status in ((1, "delivered"), (2, "pending")):
        event = uuid.uuid4()
        execute(
            db_url,
            """INSERT INTO order_events (id, order_id, client_id, sequence, type, payload, created_at)
               VALUES (:id, :order, 'shop-1', :sequence, 'order.accepted', '{}', now() - interval '40 days')""",
            id=event,
            order=order_id,
            sequence=sequence,
        )
        execute(
            db_url,
            """INSERT INTO webhook_deliveries (endpoint_id, event_id, order_id, sequence, status, give_up_at)
               VALUES (:endpoint, :event, :order, :sequence, :status, now())""",
            endpoint=endpoint,
            event=event,
            order=order_id,
            sequence=sequence,
            status=status,
        )

    pruned = retention_pass(settings(db_url))

    assert pruned["order_events"] == 1
    with engine_for(db_url).connect() as connection:
        left = connection.execute(text("SELECT sequence FROM order_events")).scalars().all()
        deliveries = connection.execute(text("SELECT status FROM webhook_deliveries")).scalars().all()
    assert (left, deliveries) == ([2], ["pending"])


def test_a_row_a_transaction_holds_is_skipped_without_waiting_and_pruned_by_a_later_pass(db_url: str) -> None:
    aged(db_url, "webhook_events", "received_at", 40, 3, id="'evt_' || n", type="'charge.refunded'")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine_for(db_url).begin() as connection:
            connection.execute(text("SELECT 1 FROM webhook_events WHERE id = 'evt_1' FOR UPDATE"))
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        first = retention_pass(settings(db_url))
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()

    assert first["webhook_events"] == 2 and took < 5, "the locked row is skipped, not waited for"
    assert retention_pass(settings(db_url))["webhook_events"] == 1

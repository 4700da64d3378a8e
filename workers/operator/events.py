"""Order events and their webhook deliveries for `orderctl events`: list them, show one, redeliver one.

Reads are plain SQL; redelivering goes through `pipeline.webhook_store` (the writer) and sends after the commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from models.db import engine_for, transaction
from pipeline import webhook_store
from pipeline.config import get_settings
from workers.enqueue import send_webhook

LIST = """
    SELECT ev.id, ev.order_id, ev.client_id, ev.sequence, ev.type, ev.created_at,
           count(d.id) AS deliveries, count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
           count(d.id) FILTER (WHERE d.status = 'pending') AS pending,
           count(d.id) FILTER (WHERE d.status = 'failed') AS failed
    FROM order_events ev LEFT JOIN webhook_deliveries d ON d.event_id = ev.id
    WHERE (CAST(:order_id AS uuid) IS NULL OR ev.order_id = :order_id)
      AND (CAST(:client_id AS text) IS NULL OR ev.client_id = :client_id)
    GROUP BY ev.id ORDER BY ev.created_at DESC, ev.order_id, ev.sequence DESC LIMIT :limit"""
EVENT = "SELECT id, order_id, client_id, sequence, type, payload, created_at FROM order_events WHERE id = :id"
DELIVERIES = """
    SELECT d.id, d.endpoint_id, w.url, w.enabled, d.status, d.attempts, d.next_attempt_at, d.last_response_code,
           d.last_error, d.delivered_at, d.created_at
    FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
    WHERE d.event_id = :id ORDER BY d.created_at, d.id"""
ATTEMPTS = """
    SELECT delivery_id, attempt, started_at, latency_ms, response_code, error FROM webhook_attempts
    WHERE delivery_id = ANY(:ids) ORDER BY delivery_id, attempt"""


def list_events(
    database_url: str, *, order_id: uuid.UUID | None = None, client_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest events (of one order, of one client), each with its delivery counts."""
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(text(LIST), {"order_id": order_id, "client_id": client_id, "limit": limit})
        return [_plain(row._mapping) for row in rows]


def event_story(database_url: str, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The event, its payload, and every delivery with its attempts (None for an unknown id)."""
    with engine_for(database_url).connect() as connection:
        event = connection.execute(text(EVENT), {"id": event_id}).one_or_none()
        if event is None:
            return None
        deliveries = [_plain(row._mapping) for row in connection.execute(text(DELIVERIES), {"id": event_id})]
        ids = [uuid.UUID(delivery["id"]) for delivery in deliveries]
        attempts = [_plain(row._mapping) for row in connection.execute(text(ATTEMPTS), {"ids": ids})]
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.pop("delivery_id"), []).append(attempt)
    for delivery in deliveries:
        delivery["attempt_log"] = by_delivery.get(delivery["id"], [])
    return {"event": _plain(event._mapping), "deliveries": deliveries}


def redeliver(database_url: str, event_id: uuid.UUID) -> list[str]:
    """Queue the event again to every enabled endpoint that had it (same webhook-id); the delivery ids sent."""
    with transaction(database_url) as connection:
        delivery_ids = webhook_store.redeliver_event(connection, event_id, get_settings().webhook_retry_for_s)
    for delivery_id in delivery_ids:
        send_webhook(delivery_id)
    return [str(delivery_id) for delivery_id in delivery_ids]


def _plain(row: Any) -> dict[str, Any]:
    return {
        key: value if isinstance(value, int | float | bool | dict | type(None)) else str(value)
        for key, value in dict(row).items()
    }

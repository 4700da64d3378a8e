"""The read side of `orderctl`: an order's story, the stuck ones, counts per status, throughput.

Plain data for an operator to look at; nothing here changes an order (the actions are in `workers.operator.actions`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from models.db import engine_for, unit_of_work
from models.orders import Order
from models.payments import Payment, Refund
from models.saga import SagaStep, Shipment
from models.status import TERMINAL_STATUSES, TERMINAL_VALUES, OrderStatus
from pipeline import order_events, saga


def missing(database_url: str, order_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The ids that name no order."""
    with unit_of_work(database_url) as session:
        found = set(session.scalars(select(Order.id).where(Order.id.in_(order_ids))))
    return [order_id for order_id in order_ids if order_id not in found]


def order_story(database_url: str, order_id: uuid.UUID) -> dict[str, Any] | None:
    """The order, its lines, payment, refunds, shipment, timeline and events as plain data (None: no such order)."""
    with unit_of_work(database_url) as session:
        order = session.get(Order, order_id)
        if order is None:
            return None
        payment = session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
        steps = session.scalars(
            select(SagaStep).where(SagaStep.order_id == order_id).order_by(SagaStep.started_at, SagaStep.finished_at)
        ).all()
        refunds = (
            session.scalars(select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.created_at)).all()
            if payment
            else []
        )
        shipment = session.scalars(select(Shipment).where(Shipment.order_id == order_id)).one_or_none()
        events = session.execute(EVENTS_OF, {"order_id": order_id}).mappings().all()
        return {
            "order": _plain(order, exclude={"lines"}),
            "lines": [_plain(line, exclude={"order", "order_id"}) for line in order.lines],
            "payment": _plain(payment) if payment else None,
            "refunds": [_plain(refund, exclude={"payment_id"}) for refund in refunds],
            "shipment": _plain(shipment, exclude={"order_id"}) if shipment else None,
            "timeline": [_plain(step, exclude={"order_id"}) for step in steps],
            "events": [{key: _json_value(value) for key, value in event.items()} for event in events],
        }


# What the shop heard: each event of the order, and how far its deliveries got (one per endpoint).
EVENTS_OF = text("""
    SELECT e.id, e.sequence, e.type, e.created_at,
           count(d.id) AS deliveries,
           count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
           count(d.id) FILTER (WHERE d.status = 'pending') AS pending,
           COALESCE(sum(d.attempts), 0) AS attempts,
           max(d.last_error) AS last_error
    FROM order_events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id
    WHERE e.order_id = :order_id
    GROUP BY e.id ORDER BY e.sequence
""")


# One order list with what an operator needs to judge it; {orders} is where the rows come from, {stuck} which
# of them count. Each kind is read through its own index and limited on its own: one OR over both read every
# order (95 ms at a million), and one LIMIT over both let 200 old parked orders hide every stalled live one.
STUCK = """
    SELECT o.id, o.status, COALESCE(o.current_step, '') AS step, o.deliveries,
           extract(epoch FROM now() - o.created_at) AS age_s,
           extract(epoch FROM now() - COALESCE(p.at, o.created_at)) AS idle_s,
           extract(epoch FROM o.lease_expires_at - now()) AS lease_left_s,
           COALESCE(e.error, o.last_error) AS last_error
    FROM {orders} AS o
    -- Progress is a step or compensation that went through; retries and operator pokes are not.
    LEFT JOIN LATERAL (SELECT max(finished_at) AS at FROM saga_steps
                       WHERE order_id = o.id AND outcome = 'succeeded' AND kind <> 'operator') p ON true
    LEFT JOIN LATERAL (SELECT concat_ws(': ', error_code, error_message) AS error FROM saga_steps
                       WHERE order_id = o.id AND outcome IN ('retrying', 'failed')
                       ORDER BY started_at DESC LIMIT 1) e ON true
    WHERE {stuck}
    ORDER BY o.created_at LIMIT :limit
"""
# Live orders (the NULL range of ix_orders_terminal_created) whose lease ran out, or with no progress for :idle_s.
STALLED = text(
    STUCK.format(
        # OFFSET 0 keeps the planner from walking every order by created_at to find the few live ones.
        orders="(SELECT * FROM orders WHERE terminal_status IS NULL OFFSET 0)",
        stuck="o.lease_expires_at < now() OR COALESCE(p.at, o.created_at) < now() - make_interval(secs => :idle_s)",
    )
)
# The parked ones, oldest first along ix_orders_terminal_created: every one counts.
PARKED = text(
    STUCK.format(
        orders="(SELECT * FROM orders WHERE terminal_status = 'needs_attention' ORDER BY created_at LIMIT :limit)",
        stuck="true",
    )
)


def stuck(database_url: str, older_than_s: float, limit: int = 200) -> dict[str, list[dict[str, Any]]]:
    """Live orders not moving (lease run out, or no progress for older_than_s), and those needing a person: at
    most `limit` of each, oldest first."""
    return {
        "stuck": stalled(database_url, older_than_s, limit),
        "needs_attention": _listed(database_url, PARKED, limit),
    }


def stalled(database_url: str, older_than_s: float, limit: int = 200) -> list[dict[str, Any]]:
    """The live orders not moving (lease run out, or no progress for older_than_s), oldest first."""
    return _listed(database_url, STALLED, limit, older_than_s)


def _listed(database_url: str, query: Any, limit: int, idle_s: float = 0.0) -> list[dict[str, Any]]:
    with engine_for(database_url).connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query, {"idle_s": idle_s, "limit": limit})]
    for row in rows:
        row["id"] = str(row["id"])
        row["step"] = row["step"] or saga.step_due(OrderStatus(row["status"]))
        for key in ("age_s", "idle_s", "lease_left_s"):
            row[key] = None if row[key] is None else round(float(row[key]), 1)
    return rows


# Orders in every status that does not grow with history: the live ones and the parked ones, two ranges of
# ix_orders_terminal_created (the parked ones counted from the index alone). Shipped and cancelled orders only
# accumulate: counting them read the whole table (1 s at a million orders); their rates are
# `throughput` here and orderflow_orders_finished_total.
OPEN_COUNTS = text("""
    SELECT status, count(*) FROM orders WHERE terminal_status IS NULL GROUP BY status
    UNION ALL SELECT terminal_status, count(*) FROM orders WHERE terminal_status = 'needs_attention' GROUP BY 1
""")
OPEN_STATUSES = tuple(s.value for s in OrderStatus if s not in TERMINAL_STATUSES or s is OrderStatus.NEEDS_ATTENTION)


def open_counts(database_url: str) -> dict[str, int]:
    """Orders per open status (live, or parked in needs_attention), every one listed: costs what is in flight."""
    with engine_for(database_url).connect() as connection:
        counts: dict[str, int] = dict(connection.execute(OPEN_COUNTS).all())
    return {status: counts.get(status, 0) for status in OPEN_STATUSES}


FAILING_ENDPOINTS = text("""
    SELECT id, client_id, url, enabled, disabled_reason, failing_since FROM webhook_endpoints
    WHERE failing_since IS NOT NULL OR NOT enabled ORDER BY failing_since NULLS LAST, created_at
""")


def failing_endpoints(database_url: str) -> list[dict[str, Any]]:
    """Shops' webhook endpoints that fail (since when) or were disabled (and why)."""
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(FAILING_ENDPOINTS).mappings().all()
    return [{key: _json_value(value) for key, value in row.items()} for row in rows]


# The window's events first, by one range of ix_order_events_created, then bucketed: joined minute by minute
# instead, the planner read every event ever (1.4 s at six million).
THROUGHPUT = text("""
    WITH recent AS (
        SELECT date_trunc('minute', created_at) AS minute, type FROM order_events
        WHERE created_at >= date_trunc('minute', now()) - make_interval(mins => :minutes - 1)
          AND type = ANY(:terminal))
    SELECT m.minute, r.type, count(r.type) AS n
    FROM generate_series(date_trunc('minute', now()) - make_interval(mins => :minutes - 1),
                         date_trunc('minute', now()), interval '1 minute') AS m(minute)
    LEFT JOIN recent r ON r.minute = m.minute
    GROUP BY m.minute, r.type ORDER BY m.minute
""")


def throughput(database_url: str, minutes: int) -> list[dict[str, Any]]:
    """Orders reaching each terminal status per minute, oldest minute first.

    Counted from the order events of those minutes (a range of ix_order_events_created), not from the orders
    table, whose every row would be read to find the few that changed lately.
    """
    status_of = {order_events.OF_STATUS[OrderStatus(status)]: status for status in TERMINAL_VALUES}
    per_minute: dict[datetime, dict[str, Any]] = {}
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(THROUGHPUT, {"minutes": minutes, "terminal": list(status_of)})
        for minute, event_type, n in rows:
            row = per_minute.setdefault(minute, {"minute": minute.isoformat(), **dict.fromkeys(TERMINAL_VALUES, 0)})
            if event_type:
                row[status_of[event_type]] = n
    return list(per_minute.values())


def _plain(row: object, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """A table row's columns as JSON-ready values."""
    columns = row.__table__.columns.keys()  # type: ignore[attr-defined]
    return {name: _json_value(getattr(row, name)) for name in columns if name not in exclude}


def _json_value(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value

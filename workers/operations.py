"""Operator actions behind `orderctl`: read an order's story, find stuck ones, re-drive, compensate, drain dead letters.

Every change locks the order row and re-checks its status, like a step does, so it is safe while
workers run; it commits first and sends after. Each one is noted in the order's timeline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import exists, func, select, text
from sqlalchemy.orm import Session

from models.db import engine_for, unit_of_work
from models.orders import Order
from models.payments import Payment
from models.saga import SagaStep
from models.status import TERMINAL_STATUSES, OrderStatus, StepKind, StepOutcome
from pipeline import saga
from pipeline.config import get_settings
from pipeline.errors import OrderAlreadyShipped
from pipeline.progress import advance, lease_until, lock_order, record
from pipeline.states import is_terminal
from workers.deadletters import DeadLetter, forget
from workers.dispatch import cancel_order, send

CANCEL_REASON = "CANCELLED_BY_OPERATOR"
TERMINAL = [status.value for status in OrderStatus if status in TERMINAL_STATUSES]


@dataclass(frozen=True)
class Change:
    """What an operator action did to one order (or would do, in a dry run); ok=False means it was refused."""

    order_id: str | None
    action: str
    ok: bool
    detail: str
    message_id: str | None = None


def missing(database_url: str, order_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The ids that name no order."""
    with unit_of_work(database_url) as session:
        found = set(session.scalars(select(Order.id).where(Order.id.in_(order_ids))))
    return [order_id for order_id in order_ids if order_id not in found]


def order_story(database_url: str, order_id: uuid.UUID) -> dict[str, Any] | None:
    """The order, its lines, its payment and its timeline as plain data (None for an unknown id)."""
    with unit_of_work(database_url) as session:
        order = session.get(Order, order_id)
        if order is None:
            return None
        payment = session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
        steps = session.scalars(
            select(SagaStep).where(SagaStep.order_id == order_id).order_by(SagaStep.started_at, SagaStep.finished_at)
        ).all()
        return {
            "order": _plain(order, exclude={"lines"}),
            "lines": [_plain(line, exclude={"order", "order_id"}) for line in order.lines],
            "payment": _plain(payment) if payment else None,
            "timeline": [_plain(step, exclude={"order_id"}) for step in steps],
        }


STUCK = text("""
    SELECT o.id, o.status, COALESCE(o.current_step, '') AS step, o.deliveries,
           extract(epoch FROM now() - o.created_at) AS age_s,
           extract(epoch FROM now() - COALESCE(p.at, o.created_at)) AS idle_s,
           extract(epoch FROM o.lease_expires_at - now()) AS lease_left_s,
           COALESCE(e.error, o.last_error) AS last_error
    FROM orders o
    -- Progress is a step or compensation that went through; retries and operator pokes are not.
    LEFT JOIN LATERAL (SELECT max(finished_at) AS at FROM saga_steps
                       WHERE order_id = o.id AND outcome = 'succeeded' AND kind <> 'operator') p ON true
    LEFT JOIN LATERAL (SELECT concat_ws(': ', error_code, error_message) AS error FROM saga_steps
                       WHERE order_id = o.id AND outcome IN ('retrying', 'failed')
                       ORDER BY started_at DESC LIMIT 1) e ON true
    WHERE o.status = 'needs_attention'
       OR (o.status NOT IN ('shipped', 'cancelled', 'needs_attention')
           AND (o.lease_expires_at < now() OR COALESCE(p.at, o.created_at) < now() - make_interval(secs => :idle_s)))
    ORDER BY o.created_at LIMIT :limit
""")


def stuck(database_url: str, older_than_s: float, limit: int = 200) -> dict[str, list[dict[str, Any]]]:
    """Live orders not moving (lease run out, or no progress for older_than_s), and those needing a person."""
    with engine_for(database_url).connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(STUCK, {"idle_s": older_than_s, "limit": limit})]
    for row in rows:
        row["id"] = str(row["id"])
        row["step"] = row["step"] or saga.step_due(OrderStatus(row["status"]))
        for key in ("age_s", "idle_s", "lease_left_s"):
            row[key] = None if row[key] is None else round(float(row[key]), 1)
    return {
        "stuck": [row for row in rows if row["status"] != OrderStatus.NEEDS_ATTENTION],
        "needs_attention": [row for row in rows if row["status"] == OrderStatus.NEEDS_ATTENTION],
    }


def retry(database_url: str, order_id: uuid.UUID, *, dry_run: bool, note: str, action: str = "retry") -> Change:
    """Re-send the order's due actor from its recorded state, with a fresh lease; a parked order re-runs its undo."""
    started = datetime.now(UTC)
    with unit_of_work(database_url) as session:
        order = lock_order(session, order_id)
        actor, refusal = _due_for_retry(session, order)
        parked = order.status == OrderStatus.NEEDS_ATTENTION
        what = f"{actor} (needs_attention -> compensating)" if parked else actor
        if actor is None or dry_run:
            return Change(str(order_id), action, actor is not None, refusal or f"would send {what}")
        lease_s = get_settings().step_lease_s
        if parked:
            advance(order, OrderStatus.COMPENSATING, actor, lease_s)  # the state machine allows exactly this
        else:
            # A person looked at it: the reaper's redelivery budget starts over.
            order.current_step, order.lease_expires_at, order.deliveries = actor, lease_until(lease_s), 0
        record(session, order.id, f"operator_{action}", StepKind.OPERATOR, StepOutcome.SUCCEEDED, started,
               error_message=f"{note} sent={actor}")  # fmt: skip
    send(actor, order_id)
    return Change(str(order_id), action, True, f"sent {what}")


def _due_for_retry(session: Session, order: Order) -> tuple[str | None, str | None]:
    """(actor to send, None) or (None, why not)."""
    status = OrderStatus(order.status)
    if status == OrderStatus.NEEDS_ATTENTION:
        # Every undo is a no-op when there is nothing to undo, so an unrecorded one re-runs them all.
        return order.current_step or saga.UNDO_ORDER[0], None
    if is_terminal(status):
        return None, f"order is {status}: nothing to re-drive"
    actor = order.current_step or saga.step_due(status)
    if actor is None:
        return None, f"no step is due in status {status}"
    if actor == "charge_payment" and _charged_without_ledger(session, order.id):
        return None, "earlier charge_payment attempts but no payment record: re-charging could double charge"
    return actor, None


def _charged_without_ledger(session: Session, order_id: uuid.UUID) -> bool:
    # The ledger row is written before the provider is called; without it we cannot tell what was charged.
    attempted = exists().where(SagaStep.order_id == order_id, SagaStep.step == "charge_payment")
    ledger = exists().where(Payment.order_id == order_id)
    return bool(session.scalar(select(attempted & ~ledger)))


def compensate(database_url: str, order_id: uuid.UUID, *, dry_run: bool, note: str) -> Change:
    """Undo what the order did and cancel it, through the same path a customer's cancel takes."""
    with unit_of_work(database_url) as session:
        status = OrderStatus(session.get_one(Order, order_id).status)
    if status == OrderStatus.SHIPPED:
        return Change(str(order_id), "compensate", False, "order has shipped and cannot be cancelled")
    if status == OrderStatus.NEEDS_ATTENTION:
        return Change(str(order_id), "compensate", False, "needs attention: `retry` re-runs its failed compensation")
    if status in (OrderStatus.COMPENSATING, OrderStatus.CANCELLED):
        return Change(str(order_id), "compensate", True, f"already {status}")
    plan = saga.plan_for_cancel(status)
    if dry_run:
        return Change(str(order_id), "compensate", True, f"would run {', '.join(plan) or 'nothing'}, then cancel")
    try:
        after = cancel_order(database_url, order_id, CANCEL_REASON)
    except OrderAlreadyShipped:  # it shipped between our look and the lock
        return Change(str(order_id), "compensate", False, "order has shipped and cannot be cancelled")
    _note(database_url, str(order_id), "operator_compensate", f"{note} status={after}")
    return Change(str(order_id), "compensate", True, f"now {after}; the workers run its undo steps")


def requeue(database_url: str, client: redis.Redis, letter: DeadLetter, *, dry_run: bool, note: str) -> Change:
    """Re-drive a dead letter's order through `retry` (the letter itself is not replayed), then drop the letter.

    A refused retry keeps its letter, for the operator to look at.
    """
    order_id = _known_id(letter.order_id)
    if order_id is None or _due_actor(database_url, order_id) is None:
        if not dry_run:
            forget(client, letter)
        detail = "would drop it: no live order" if dry_run else "dropped: no live order"
        return Change(letter.order_id, "requeue", True, detail, letter.message_id)
    note = f"{note} letter={letter.actor}"
    change = retry(database_url, uuid.UUID(order_id), dry_run=dry_run, note=note, action="dlq_requeue")
    if change.ok and not dry_run:
        forget(client, letter)
    return Change(letter.order_id, "requeue", change.ok, change.detail, letter.message_id)


def purge(database_url: str, client: redis.Redis, letter: DeadLetter, *, dry_run: bool, note: str) -> Change:
    """Drop a dead letter without re-driving anything (the reaper still re-drives a live order whose lease ran out)."""
    if not dry_run:
        forget(client, letter)
        if order_id := _known_id(letter.order_id):
            _note(database_url, order_id, "operator_dlq_purge", f"{note} letter={letter.actor}")
    detail = f"{'would drop' if dry_run else 'dropped'} {letter.actor} from {letter.queue}"
    return Change(letter.order_id, "purge", True, detail, letter.message_id)


def order_counts(database_url: str) -> dict[str, int]:
    """Orders per status, every status listed."""
    with engine_for(database_url).connect() as connection:
        counts = dict(connection.execute(select(Order.status, func.count()).group_by(Order.status)).all())
    return {status.value: counts.get(status.value, 0) for status in OrderStatus}


THROUGHPUT = text("""
    SELECT m.minute, o.status, count(o.id) AS n
    FROM generate_series(date_trunc('minute', now()) - make_interval(mins => :minutes - 1),
                         date_trunc('minute', now()), interval '1 minute') AS m(minute)
    LEFT JOIN orders o ON o.status = ANY(:terminal) AND date_trunc('minute', o.updated_at) = m.minute
    GROUP BY m.minute, o.status ORDER BY m.minute
""")


def throughput(database_url: str, minutes: int) -> list[dict[str, Any]]:
    """Orders reaching each terminal status per minute, oldest minute first (a terminal order is not updated again)."""
    per_minute: dict[datetime, dict[str, Any]] = {}
    with engine_for(database_url).connect() as connection:
        for minute, status, n in connection.execute(THROUGHPUT, {"minutes": minutes, "terminal": TERMINAL}):
            row = per_minute.setdefault(minute, {"minute": minute.isoformat(), **dict.fromkeys(TERMINAL, 0)})
            if status:
                row[status] = n
    return list(per_minute.values())


def _due_actor(database_url: str, order_id: str) -> str | None:
    """The actor a live order waits for; None for a finished or unknown order."""
    with unit_of_work(database_url) as session:
        order = session.get(Order, uuid.UUID(order_id))
        if order is None or is_terminal(order.status):
            return None
        return order.current_step or saga.step_due(OrderStatus(order.status))


def _note(database_url: str, order_id: str, action: str, message: str) -> None:
    """Add an operator entry to the order's timeline (if the order exists)."""
    with unit_of_work(database_url) as session:
        if session.get(Order, uuid.UUID(order_id)) is not None:
            now = datetime.now(UTC)
            record(session, uuid.UUID(order_id), action, StepKind.OPERATOR, StepOutcome.SUCCEEDED, now,
                   error_message=message)  # fmt: skip


def _known_id(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


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

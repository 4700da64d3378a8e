"""The only writer of orders, order_lines, saga_steps (the timeline), idempotency_keys and order_events.

Placing an order is intake's plain SQL on the API's async psycopg connection: one round trip, nothing to
compile. Moving an order along the state machine, with its lease and timeline, is the hot path of every
step: its statements are built once with SQLAlchemy Core and run by `models.db.run` as prepared statements
on psycopg. With the ORM, loading and flushing the order cost more CPU than everything else a step does,
and SQLAlchemy's per-call execution more than psycopg's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from sqlalchemy import CTE, Connection, Insert, bindparam, cast, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from models.db import run
from models.schemas import ShipmentOut
from models.status import OrderStatus, StepKind, StepOutcome
from models.tables import ORDER_EVENTS as EVENTS
from models.tables import ORDER_LINES as LINES
from models.tables import ORDERS, TIMELINE
from pipeline import order_events, saga
from pipeline.errors import OrderAlreadyShipped, OrderNotFound
from pipeline.retention import Prune
from pipeline.states import check_transition, is_terminal


@dataclass(frozen=True)
class Line:
    """One line of a locked order."""

    product_id: uuid.UUID
    quantity: int
    unit_price_cents: int


@dataclass
class LockedOrder:
    """The order row as this transaction locked it; `update_order` keeps it in step with what it writes."""

    id: uuid.UUID
    user_id: str
    status: str
    currency: str
    total_cents: int
    payment_method_id: str
    shipping_address: dict[str, Any]
    customer_email: str | None
    cancel_reason: str | None
    last_error: str | None
    current_step: str | None
    lease_expires_at: datetime | None
    deliveries: int
    created_at: datetime
    updated_at: datetime
    lines: tuple[Line, ...] = field(default=())
    # The shipment this transaction recorded (pipeline.shipping_steps), for the shipped event without a read-back.
    shipment: ShipmentOut | None = None


_ORDER_NAMES = [name for name in LockedOrder.__dataclass_fields__ if name not in ("lines", "shipment")]
_ORDER_COLUMNS = [ORDERS.c[name] for name in _ORDER_NAMES]
_LOCK = (
    # Lines come in the same round trip: a join on a handful of rows is cheaper than a second query.
    select(*_ORDER_COLUMNS, LINES.c.product_id, LINES.c.quantity, LINES.c.unit_price_cents)
    .outerjoin(LINES, LINES.c.order_id == ORDERS.c.id)
    .where(ORDERS.c.id == bindparam("order_id"))
    .order_by(LINES.c.line_no)
    # NO KEY UPDATE lets side transactions insert rows that reference the order (the payment ledger).
    .with_for_update(key_share=True, of=ORDERS)
)
# Statements are built once and run with `models.db.run`: building, compiling and cache-keying a fresh one
# per call cost more than running it. With no values() of its own, the UPDATE sets the columns named in its
# parameters.
_UPDATE = update(ORDERS).where(ORDERS.c.id == bindparam("order_id"))
_RECORD = insert(TIMELINE)
_NOTE_COLUMNS = tuple(column.name for column in TIMELINE.c if column.name not in ("id", "order_id"))


def _moved(columns: tuple[str, ...]) -> CTE:
    """UPDATE the order's columns named `set_<column>`, as a CTE answering its id and client."""
    return (
        update(ORDERS)
        .where(ORDERS.c.id == bindparam("order_id"))
        .values({name: bindparam(f"set_{name}", type_=ORDERS.c[name].type) for name in columns})
        .returning(ORDERS.c.id, ORDERS.c.client_id)
        .cte("moved")
    )


def _note(moved: CTE) -> Insert:
    """INSERT the timeline row (parameters `note_<column>`) of the order `moved` updated."""
    note = [bindparam(f"note_{name}", type_=TIMELINE.c[name].type) for name in _NOTE_COLUMNS]
    return insert(TIMELINE).from_select(["order_id", *_NOTE_COLUMNS], select(moved.c.id, *note))


@cache
def _update_and_note(columns: tuple[str, ...]) -> Insert:
    """UPDATE the order and INSERT its timeline row in one statement (one round trip per step, not two)."""
    return _note(_moved(columns))


@cache
def _move_note_and_emit(columns: tuple[str, ...], noting: bool) -> Insert:
    """UPDATE the order, INSERT its timeline row (if `noting`) and its next event, in one statement.

    The event's sequence continues the order's events (the caller holds the order's row lock, so no two
    writers race), and is written into its payload too.
    """
    moved = _moved(columns)
    after = (
        select(moved.c.id, moved.c.client_id, (func.coalesce(func.max(EVENTS.c.sequence), 0) + 1).label("sequence"))
        .select_from(moved.outerjoin(EVENTS, EVENTS.c.order_id == moved.c.id))
        .group_by(moved.c.id, moved.c.client_id)
        .cte("next")
    )
    payload = cast(bindparam("event_payload"), JSONB).op("||")(func.jsonb_build_object("sequence", after.c.sequence))
    columns_written = ["id", "order_id", "client_id", "sequence", "type", "payload"]
    event = select(
        bindparam("event_id", type_=EVENTS.c.id.type),
        after.c.id,
        after.c.client_id,
        after.c.sequence,
        bindparam("event_type", type_=EVENTS.c.type.type),
        payload,
    )
    statement = insert(EVENTS).from_select(columns_written, event)
    return statement.add_cte(_note(moved).cte("noted")) if noting else statement


# The key row first: the order and its lines are inserted only if the key row was (see api/intake.py).
# The order's timestamps are the transaction's clock, read by intake's price lookup (now() is constant in a
# transaction, so this is the value the columns' now() defaults would give).
_PLACE = """
WITH new_key AS (
    INSERT INTO idempotency_keys (client_id, key, request_hash, order_id, response_code, response_body)
    VALUES (%(client_id)s, %(key)s, %(request_hash)s, %(order_id)s, 201, %(response_body)s)
    ON CONFLICT (client_id, key) DO NOTHING
    RETURNING order_id
), new_order AS (
    INSERT INTO orders (id, client_id, user_id, status, currency, total_cents, payment_method_id, shipping_address,
                        customer_email, current_step, lease_expires_at, created_at, updated_at)
    SELECT order_id, %(client_id)s, %(user_id)s, %(status)s, %(currency)s, %(total_cents)s, %(payment_method_id)s,
           %(shipping_address)s, %(customer_email)s, %(current_step)s, %(lease_expires_at)s, %(created_at)s,
           %(created_at)s
    FROM new_key
    RETURNING id
), new_lines AS (
    INSERT INTO order_lines (order_id, product_id, line_no, quantity, unit_price_cents)
    SELECT new_order.id, line.product_id, line.line_no, line.quantity, line.unit_price_cents
    FROM new_order, unnest(%(product_ids)s::uuid[], %(quantities)s::integer[], %(prices)s::bigint[])
        WITH ORDINALITY AS line (product_id, quantity, unit_price_cents, line_no)
), new_event AS (
    INSERT INTO order_events (id, order_id, client_id, sequence, type, payload)
    SELECT %(event_id)s, new_order.id, %(client_id)s, 1, %(event_type)s, %(event)s FROM new_order
)
SELECT count(*) FROM new_order
"""


async def place_order(
    connection: AsyncConnection,
    *,
    client_id: str,
    key: str,
    request_hash: str,
    order_id: uuid.UUID,
    response_body: dict[str, Any],
    user_id: str,
    currency: str,
    total_cents: int,
    payment_method_id: str,
    shipping_address: dict[str, Any],
    customer_email: str | None,
    lines: Sequence[tuple[uuid.UUID, int, int]],
    created_at: datetime,
    lease_s: float,
) -> bool:
    """Insert key row, order (pending, leased to the saga's first step), lines and its first event in one statement.

    Runs in the caller's transaction; False if the key row exists already (then nothing is written).
    """
    event_id, accepted = uuid.uuid4(), order_events.OF_STATUS[OrderStatus.PENDING]
    as_placed = response_body | {"updatedAt": response_body["createdAt"], "cancelReason": None, "shipment": None}
    event = order_events.envelope(event_id, accepted, created_at, as_placed) | {"sequence": 1}
    cursor = await connection.execute(
        _PLACE,
        {
            "event_id": event_id,
            "event_type": accepted,
            "event": Jsonb(event),
            "client_id": client_id,
            "key": key,
            "request_hash": request_hash,
            "order_id": order_id,
            "response_body": Jsonb(response_body),
            "user_id": user_id,
            "status": OrderStatus.PENDING.value,
            "currency": currency,
            "total_cents": total_cents,
            "payment_method_id": payment_method_id,
            "shipping_address": Jsonb(shipping_address),
            "customer_email": customer_email,
            "current_step": saga.FIRST_STEP,
            "lease_expires_at": lease_until(lease_s),
            "created_at": created_at,
            "product_ids": [product for product, _, _ in lines],
            "quantities": [quantity for _, quantity, _ in lines],
            "prices": [price for _, _, price in lines],
        },
    )
    row = await cursor.fetchone()  # the statement's one row, already received: no round trip
    return bool(row and row[0])


# The sequence continues the order's events; the caller holds the order's row lock, so no two writers race.
_EMIT = text("""
    INSERT INTO order_events (id, order_id, client_id, sequence, type, payload)
    SELECT :id, orders.id, orders.client_id, next.sequence, :type,
           CAST(:payload AS jsonb) || jsonb_build_object('sequence', next.sequence)
    FROM orders, LATERAL (
        SELECT coalesce(max(sequence), 0) + 1 AS sequence FROM order_events WHERE order_id = orders.id
    ) AS next
    WHERE orders.id = :order_id""")
_SHIPMENT = text("SELECT carrier, tracking_number FROM shipments WHERE order_id = :order_id")


def lock_order(connection: Connection, order_id: uuid.UUID | str) -> LockedOrder:
    """The order, row-locked until the transaction ends: one step of one order runs at a time."""
    rows = run(connection, _LOCK, {"order_id": _as_uuid(order_id)}).fetchall()
    if not rows:
        raise OrderNotFound(f"no order {order_id}")
    width = len(_ORDER_COLUMNS)  # the order's columns, then its line's
    lines = tuple(Line(*row[width:]) for row in rows if row[width] is not None)
    order = zip(_ORDER_NAMES, rows[0][:width], strict=True)
    return LockedOrder(**dict(order), lines=lines)


def update_order(
    connection: Connection, order: LockedOrder, noting: dict[str, Any] | None = None, **values: Any
) -> None:
    """Write these columns of the locked order (updated_at moves too, unless given) and mirror them in `order`.

    `noting` is a `timeline_row` written in the same statement.
    """
    if noting is None:
        run(connection, _UPDATE, {"order_id": order.id, **values})
    else:
        changes = {f"set_{name}": value for name, value in values.items()}
        notes = {f"note_{name}": value for name, value in noting.items()}
        run(connection, _update_and_note(tuple(values)), {"order_id": order.id, **changes, **notes})
    for name, value in values.items():
        setattr(order, name, value)


def advance(
    connection: Connection,
    order: LockedOrder,
    new_status: OrderStatus,
    next_actor: str | None,
    lease_s: float,
    noting: dict[str, Any] | None = None,
    **values: Any,
) -> None:
    """Move to new_status and lease the order to the next actor: unmoved past the lease, the reaper re-drives it.

    The move, its timeline row (`noting`) and the order's event are one statement: the outbox costs the
    step no round trip of its own.
    """
    status = check_transition(order.status, new_status).value
    lease = None if is_terminal(new_status) else lease_until(lease_s)
    moved = {"status": status, "current_step": next_actor, "deliveries": 0, "lease_expires_at": lease, **values}
    for name, value in moved.items():
        setattr(order, name, value)
    event_id, event_type, payload = _event(connection, order, order_events.OF_STATUS[OrderStatus(status)])
    parameters = {f"set_{name}": value for name, value in moved.items()}
    parameters |= {f"note_{name}": value for name, value in (noting or {}).items()}
    parameters |= {"order_id": order.id, "event_id": event_id, "event_type": event_type, "event_payload": payload}
    run(connection, _move_note_and_emit(tuple(moved), noting is not None), parameters)


def emit(connection: Connection, order: LockedOrder, event_type: str, **details: dict[str, Any]) -> None:
    """Write the order's next event, in this transaction (the order's row lock orders its sequence).

    `details` go into the event's data beside the order (the refund of an `order.refunded`, ...).
    """
    event_id, _, payload = _event(connection, order, event_type, **details)
    run(connection, _EMIT, {"id": event_id, "order_id": order.id, "type": event_type, "payload": payload})


def _event(
    connection: Connection, order: LockedOrder, event_type: str, **details: dict[str, Any]
) -> tuple[uuid.UUID, str, str]:
    """A new event's id, type and JSON body (without its sequence), showing the order as it is now."""
    at = datetime.now(UTC)
    shipment = order.shipment
    if shipment is None and event_type == order_events.OF_STATUS[OrderStatus.SHIPPED]:
        found = run(connection, _SHIPMENT, {"order_id": order.id}).fetchone()
        shipment = ShipmentOut(carrier=found[0], tracking_number=found[1]) if found else None
    order.updated_at = at
    event_id = uuid.uuid4()
    body = order_events.envelope(event_id, event_type, at, order_events.order_document(order, shipment))
    body["data"].update(details)
    return event_id, event_type, json.dumps(body)


def begin_compensation(
    connection: Connection, order: LockedOrder, plan: tuple[str, ...], reason: str, error: str | None, lease_s: float
) -> str | None:
    """Start undoing the order: returns the first compensation to send, or None if the order is simply cancelled."""
    if order.status == OrderStatus.SHIPPED:
        raise OrderAlreadyShipped(f"order {order.id} has shipped and cannot be cancelled")
    check_transition(order.status, OrderStatus.COMPENSATING)
    if not plan:  # nothing to undo: compensating and done at once
        order.status = OrderStatus.COMPENSATING.value
        advance(connection, order, OrderStatus.CANCELLED, None, lease_s, cancel_reason=reason, last_error=error)
        return None
    advance(connection, order, OrderStatus.COMPENSATING, plan[0], lease_s, cancel_reason=reason, last_error=error)
    return plan[0]


def park(
    connection: Connection,
    order: LockedOrder,
    actor: str,
    kind: StepKind,
    started_at: datetime,
    lease_s: float,
    *,
    error_code: str,
    error_message: str | None,
    **details: Any,
) -> None:
    """Move the order to needs_attention at `actor`, noting the failed attempt; last_error reads `actor: code: why`."""
    note = timeline_row(
        actor, kind, StepOutcome.FAILED, started_at, error_code=error_code, error_message=error_message, **details
    )
    last_error = f"{actor}: {error_code}: {error_message or 'no reason given'}"[:1000]
    advance(connection, order, OrderStatus.NEEDS_ATTENTION, actor, lease_s, note, last_error=last_error)


def record(
    connection: Connection,
    order_id: uuid.UUID,
    step: str,
    kind: StepKind,
    outcome: StepOutcome,
    started_at: datetime,
    **details: Any,
) -> None:
    """Add one attempt to the order's timeline (details: see `timeline_row`)."""
    connection.execute(_RECORD, {"order_id": order_id, **timeline_row(step, kind, outcome, started_at, **details)})


def timeline_row(
    step: str,
    kind: StepKind,
    outcome: StepOutcome,
    started_at: datetime,
    *,
    attempt: int = 1,
    error_code: str | None = None,
    error_message: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """One attempt as timeline columns, finished now (the order id is added by whoever writes it)."""
    finished_at = datetime.now(UTC)
    return {
        "step": step,
        "kind": kind.value,
        "attempt": attempt,
        "outcome": outcome.value,
        "error_code": error_code,
        "error_message": (error_message or "")[:1000] or None,
        "message_id": message_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_ms": max(0, int((finished_at - started_at).total_seconds() * 1000)),
    }


def extend_leases(
    connection: Connection, order_ids: Sequence[uuid.UUID], lease_s: float, max_factor: int, *, redrive: bool
) -> None:
    """The reaper's bookkeeping: push the leases on; a re-drive counts a delivery and doubles its lease (capped).

    updated_at is kept: it is the order's last progress, which the reaper's bookkeeping is not.
    """
    if not order_ids:
        return
    deliveries = ORDERS.c.deliveries + 1 if redrive else ORDERS.c.deliveries
    factor = func.least(func.power(2, deliveries), max_factor) if redrive else 1
    connection.execute(
        update(ORDERS)
        .where(ORDERS.c.id.in_(order_ids))
        .values(
            deliveries=deliveries,
            lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s * factor),
            updated_at=ORDERS.c.updated_at,
        )
    )


def lease_until(lease_s: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=lease_s)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# ---- retention (run by the reaper's retention pass, workers/retention.py) -------------------------------

PRUNE_IDEMPOTENCY_KEYS = Prune(
    "idempotency_keys",
    "created_at",
    "idempotency_key_ttl_s",
    text("""DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :older_than_s)
                ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED))"""),
)
# An event still pending delivery to an endpoint stays; its deliveries and their attempts go with it (cascade).
PRUNE_ORDER_EVENTS = Prune(
    "order_events",
    "created_at",
    "order_event_ttl_s",
    text("""DELETE FROM order_events WHERE id = ANY(ARRAY(
                SELECT e.id FROM order_events e WHERE e.created_at < now() - make_interval(secs => :older_than_s)
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
                ORDER BY e.created_at LIMIT :batch FOR UPDATE SKIP LOCKED))"""),
)

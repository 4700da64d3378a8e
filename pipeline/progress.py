"""Moving an order along the state machine inside a unit of work, with its lease and timeline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, joinedload

from models.orders import Order
from models.saga import SagaStep
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline.errors import OrderAlreadyShipped, OrderNotFound
from pipeline.states import check_transition, is_terminal


def lock_order(session: Session, order_id: uuid.UUID | str) -> Order:
    """The order, row-locked until the transaction ends: one step of one order runs at a time.

    NO KEY UPDATE lets side transactions insert rows that reference the order (the payment ledger)
    while the step holds the lock.
    """
    order = (
        session.scalars(
            select(Order)
            .where(Order.id == _as_uuid(order_id))
            .with_for_update(key_share=True, of=Order)
            # Lines come in the same round trip (a join on a handful of rows is cheaper than a second query).
            .options(joinedload(Order.lines))
        )
        .unique()
        .one_or_none()
    )
    if order is None:
        raise OrderNotFound(f"no order {order_id}")
    return order


def advance(order: Order, new_status: OrderStatus, next_actor: str | None, lease_s: float) -> None:
    """Move to new_status and lease the order to the next actor: unmoved past the lease, the reaper re-drives it."""
    order.status = check_transition(order.status, new_status)
    order.current_step = next_actor
    order.deliveries = 0
    order.lease_expires_at = None if is_terminal(new_status) else lease_until(lease_s)


def begin_compensation(
    order: Order, plan: tuple[str, ...], reason: str, error: str | None, lease_s: float
) -> str | None:
    """Start undoing the order: returns the first compensation to send, or None if the order is simply cancelled."""
    if order.status == OrderStatus.SHIPPED:
        raise OrderAlreadyShipped(f"order {order.id} has shipped and cannot be cancelled")
    order.cancel_reason = reason
    order.last_error = error
    advance(order, OrderStatus.COMPENSATING, plan[0] if plan else None, lease_s)
    if not plan:
        advance(order, OrderStatus.CANCELLED, None, lease_s)
        return None
    return plan[0]


def record(
    session: Session,
    order_id: uuid.UUID,
    step: str,
    kind: StepKind,
    outcome: StepOutcome,
    started_at: datetime,
    *,
    attempt: int = 1,
    error_code: str | None = None,
    error_message: str | None = None,
    message_id: str | None = None,
) -> None:
    """Add one attempt to the order's timeline (a plain INSERT: nothing reads the row back in this transaction)."""
    finished_at = datetime.now(UTC)
    session.execute(
        insert(SagaStep).values(
            order_id=order_id, step=step, kind=kind.value, attempt=attempt, outcome=outcome.value,
            error_code=error_code, error_message=(error_message or "")[:1000] or None, message_id=message_id,
            started_at=started_at, finished_at=finished_at,
            duration_ms=max(0, int((finished_at - started_at).total_seconds() * 1000)),
        )
    )  # fmt: skip


def lease_until(lease_s: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=lease_s)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

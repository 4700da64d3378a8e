"""Send saga messages by actor name, with queues from the saga table, and start a cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import dramatiq

from models.db import transaction
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import saga
from pipeline.config import get_settings
from pipeline.progress import begin_compensation, lock_order, record
from workers.broker import broker


def send(actor: str, order_id: uuid.UUID | str, delay_ms: int | None = None) -> None:
    """Enqueue `actor(order_id)`; call only after the transaction that calls for it has committed."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=saga.queue_of(actor), actor_name=actor, args=(str(order_id),), kwargs={}, options={}
    )
    broker.enqueue(message, delay=delay_ms)


def start_saga(order_id: uuid.UUID | str) -> None:
    """Hand a committed pending order to the first step of the saga."""
    send(saga.FIRST_STEP, order_id)


def cancel_order(database_url: str, order_id: uuid.UUID | str, reason: str = "CANCELLED_BY_REQUEST") -> OrderStatus:
    """Start compensating an order that has not shipped; returns its status after the request.

    Safe to repeat: an order already compensating or cancelled is left as it is.
    Raises OrderNotFound, or OrderAlreadyShipped for a shipped order.
    """
    started = datetime.now(UTC)
    with transaction(database_url) as connection:
        order = lock_order(connection, order_id)
        if order.status in (OrderStatus.COMPENSATING, OrderStatus.CANCELLED, OrderStatus.NEEDS_ATTENTION):
            return OrderStatus(order.status)
        plan = saga.plan_for_cancel(OrderStatus(order.status))
        first = begin_compensation(connection, order, plan, reason, None, get_settings().step_lease_s)
        record(connection, order.id, "cancel", StepKind.OPERATOR, StepOutcome.SUCCEEDED, started, error_code=reason)
        status = OrderStatus(order.status)
    if first:
        send(first, order_id)
    return status

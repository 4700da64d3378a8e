"""A customer's or an operator's cancel: start compensating an order that has not shipped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from models.db import transaction
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import saga
from pipeline.config import get_settings
from pipeline.errors import OrderAlreadyShipped
from pipeline.order_store import begin_compensation, lock_order, record
from workers.enqueue import send


def cancel_order(database_url: str, order_id: uuid.UUID | str, reason: str = "CANCELLED_BY_REQUEST") -> OrderStatus:
    """Start compensating an order that has not shipped; returns its status after the request.

    Safe to repeat: an order already compensating, cancelled or parked is left as it is.
    Raises OrderNotFound, or OrderAlreadyShipped for a shipped order (the one cancel the saga refuses).
    """
    started = datetime.now(UTC)
    with transaction(database_url) as connection:
        order = lock_order(connection, order_id)
        decision = saga.next_action(OrderStatus(order.status), order.current_step, saga.CancelRequested())
        if isinstance(decision, saga.Refuse):
            raise OrderAlreadyShipped(f"order {order.id} has shipped and cannot be cancelled")
        if not isinstance(decision, saga.Compensate):
            return OrderStatus(order.status)
        first = begin_compensation(connection, order, decision.plan, reason, None, get_settings().step_lease_s)
        record(connection, order.id, "cancel", StepKind.OPERATOR, StepOutcome.SUCCEEDED, started, error_code=reason)
        status = OrderStatus(order.status)
    if first:
        send(first, order_id)
    return status

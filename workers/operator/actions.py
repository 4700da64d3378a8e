"""Operator actions behind `orderctl`: re-drive, compensate, drain dead letters (the read side is `order_views`).

Every change locks the order row and re-checks its status, like a step does, so it is safe while
workers run; it commits first and sends after. Each one is noted in the order's timeline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import Connection, exists, select

from models.db import transaction, unit_of_work
from models.orders import Order
from models.payments import Payment
from models.saga import SagaStep
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import saga
from pipeline.config import get_settings
from pipeline.errors import OrderAlreadyShipped
from pipeline.order_store import LockedOrder, advance, lease_until, lock_order, record, update_order
from workers.enqueue import send
from workers.operator.dead_letters import DeadLetter, forget
from workers.saga.cancel import cancel_order

CANCEL_REASON = "CANCELLED_BY_OPERATOR"


@dataclass(frozen=True)
class Change:
    """What an operator action did to one order (or would do, in a dry run); ok=False means it was refused."""

    order_id: str | None
    action: str
    ok: bool
    detail: str
    message_id: str | None = None


def note(operator: str, reason: str) -> str:
    """Who did it and why, as each operator entry of a timeline says it (the CLI and the console alike)."""
    return f"operator={operator} reason={reason!r}"


def retry(database_url: str, order_id: uuid.UUID, *, dry_run: bool, note: str, action: str = "retry") -> Change:
    """Re-send the order's due actor from its recorded state, with a fresh lease; a parked order re-runs its undo."""
    started = datetime.now(UTC)
    with transaction(database_url) as connection:
        order = lock_order(connection, order_id)
        decision = _due_for_retry(connection, order)
        if isinstance(decision, saga.Refuse):
            return Change(str(order_id), action, False, decision.reason)
        assert isinstance(decision, saga.Send)
        actor = decision.actor
        parked = order.status == OrderStatus.NEEDS_ATTENTION
        resumes = "resumes" if actor in saga.BY_NAME else "compensating"
        what = f"{actor} (needs_attention -> {resumes})" if parked else actor
        if dry_run:
            return Change(str(order_id), action, True, f"would send {what}")
        lease_s = get_settings().step_lease_s
        if decision.status is None:
            # A person looked at it: the reaper's redelivery budget starts over.
            update_order(connection, order, current_step=actor, lease_expires_at=lease_until(lease_s), deliveries=0)
        else:
            # A held order resumes before the step that held it; a parked compensation runs again.
            advance(connection, order, decision.status, actor, lease_s)
        record(
            connection,
            order.id,
            f"operator_{action}",
            StepKind.OPERATOR,
            StepOutcome.SUCCEEDED,
            started,
            error_message=f"{note} sent={actor}",
        )
    send(actor, order_id)
    return Change(str(order_id), action, True, f"sent {what}")


def _due_for_retry(connection: Connection, order: LockedOrder) -> saga.Decision:
    """The saga's answer to a retry of the locked order: Send its due actor, or Refuse and say why."""
    retry = saga.OperatorRetry(charged_without_ledger=_charged_without_ledger(connection, order.id))
    return saga.next_action(OrderStatus(order.status), order.current_step, retry)


def _charged_without_ledger(connection: Connection, order_id: uuid.UUID) -> bool:
    # The ledger row is written before the provider is called; without it we cannot tell what was charged.
    attempted = exists().where(SagaStep.order_id == order_id, SagaStep.step == "charge_payment")
    ledger = exists().where(Payment.order_id == order_id)
    return bool(connection.scalar(select(attempted & ~ledger)))


def compensate(database_url: str, order_id: uuid.UUID, *, dry_run: bool, note: str) -> Change:
    """Undo what the order did and cancel it, through the same path a customer's cancel takes."""
    with unit_of_work(database_url) as session:
        order = session.get_one(Order, order_id)
        decision = saga.next_action(OrderStatus(order.status), order.current_step, saga.CancelRequested(operator=True))
    if isinstance(decision, saga.Refuse | saga.Ignore):
        # Refused when shipped or parked (`retry` re-runs a parked compensation); ignored when already undoing.
        return Change(str(order_id), "compensate", isinstance(decision, saga.Ignore), decision.reason)
    assert isinstance(decision, saga.Compensate)
    if dry_run:
        plan = ", ".join(decision.plan) or "nothing"
        return Change(str(order_id), "compensate", True, f"would run {plan}, then cancel")
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


def _due_actor(database_url: str, order_id: str) -> str | None:
    """The actor a live order waits for; None for a finished or unknown order."""
    with unit_of_work(database_url) as session:
        order = session.get(Order, uuid.UUID(order_id))
        if order is None:
            return None
        due = saga.next_action(OrderStatus(order.status), order.current_step, saga.Stalled())
        return due.actor if isinstance(due, saga.Send) else None


def _note(database_url: str, order_id: str, action: str, message: str) -> None:
    """Add an operator entry to the order's timeline (if the order exists)."""
    with transaction(database_url) as connection:
        if connection.scalar(select(Order.id).where(Order.id == uuid.UUID(order_id))) is not None:
            now = datetime.now(UTC)
            record(
                connection,
                uuid.UUID(order_id),
                action,
                StepKind.OPERATOR,
                StepOutcome.SUCCEEDED,
                now,
                error_message=message,
            )


def _known_id(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None

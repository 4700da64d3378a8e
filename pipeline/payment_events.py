"""What the payment provider's events do: correct the ledger, and move an order only where money demands it.

The provider's records are the truth, so an event corrects our ledger even against what we believed
(a success for a payment we had recorded declined). Orders move only where nothing else would move
them: a cancelled order whose money arrived late is compensated again (its refund re-run), and one
whose refund failed after the cancel is parked for a person. Everything else (a refund or dispute
before shipment) is caught by the next step under the order's row lock; after shipment it is
recorded and alerted on. Every effect is one guarded statement, so a late or repeated event never
undoes a newer state. The money itself is written by `pipeline.ledger`; this module writes only its inbox,
webhook_events (each provider event's id, recorded in the transaction of its effect).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, exists, or_, select, text
from sqlalchemy.dialects.postgresql import insert

from models.status import OrderStatus, PaymentStatus, StepKind, StepOutcome
from models.tables import ORDERS, PAYMENTS, WebhookEvent
from pipeline import ledger, metrics, order_events
from pipeline.config import get_settings
from pipeline.order_store import advance, emit, lock_order, park, timeline_row
from pipeline.payment_types import ORIGIN, Refund
from pipeline.retention import Prune

UNSETTLED = (PaymentStatus.STARTED.value, PaymentStatus.IN_DOUBT.value, PaymentStatus.PENDING.value)
FINAL_DISPUTES = (ledger.DISPUTE_WON, ledger.DISPUTE_LOST)
_RECORD_EVENT = insert(WebhookEvent).on_conflict_do_nothing(index_elements=["id"]).returning(WebhookEvent.id)


class NotSettled(Exception):
    """The event is about a payment whose charge we have not settled yet: refuse it so the provider redelivers."""


@dataclass(frozen=True)
class Outcome:
    """What an event did: applied, unchanged, unknown (no payment of ours) or ignored (a type we do not use)."""

    kind: str
    order_id: uuid.UUID | None = None
    send: str | None = None  # the actor to send once the transaction has committed
    alert: str | None = None  # why a person should look


def order_id_in(metadata: Any) -> uuid.UUID | None:
    """The order a provider object is tagged with, if its metadata holds a well-formed order id."""
    try:
        return uuid.UUID(str(metadata["order_id"]))
    except (KeyError, ValueError, TypeError):
        return None


def _match(order_id: uuid.UUID | None, intent_id: str | None) -> Any:
    if order_id is not None:
        return PAYMENTS.c.order_id == order_id
    return PAYMENTS.c.intent_id == intent_id if intent_id else None


def _known(connection: Connection, match: Any) -> tuple[str, uuid.UUID, uuid.UUID] | None:
    """(status, order id, payment id) of the matched payment, if any."""
    if match is None:
        return None
    row = connection.execute(select(PAYMENTS.c.status, PAYMENTS.c.order_id, PAYMENTS.c.id).where(match)).first()
    return (row[0], row[1], row[2]) if row else None


def _unchanged(connection: Connection, match: Any) -> Outcome:
    """An event that changed nothing: about a payment of ours (unchanged) or about none (unknown)."""
    known = _known(connection, match)
    return Outcome("unchanged" if known else "unknown", known[1] if known else None)


def _intent_match(intent: dict[str, Any]) -> Any:
    """The payment a payment intent event is about: by the order in its metadata, else by the intent's id."""
    if not isinstance(intent.get("id"), str) or not intent["id"]:
        raise ValueError("a payment intent needs an id")
    return _match(order_id_in(intent.get("metadata")), intent["id"])


def _lock_payer(connection: Connection, match: Any) -> uuid.UUID | None:
    """Lock the order of the matched payment before its payment row is written; its id, None if there is none.

    Every writer takes the order's row lock first, then its payment's. The charge step holds the order and
    records the provider's answer on a side connection (ledger.mark): an event that wrote the payment
    first and then waited for the order would hang both, out of Postgres's sight (the step's transaction
    only sits idle, waiting for its own thread), and the order would never move again.
    """
    known = _known(connection, match)
    if known is None:
        return None
    lock_order(connection, known[1])
    return known[1]


def intent_succeeded(connection: Connection, intent: dict[str, Any]) -> Outcome:
    """Money was taken: the ledger says so, and a cancelled order gets its refund."""
    match = _intent_match(intent)
    if (order_id := _lock_payer(connection, match)) is None:
        return Outcome("unknown")
    values = {"status": PaymentStatus.SUCCEEDED.value, "intent_id": intent["id"], "error": None}
    changed = ledger.write_where(connection, match, PAYMENTS.c.status != PaymentStatus.SUCCEEDED.value, **values)
    if changed is None:
        return Outcome("unchanged", order_id)  # our payment, already succeeded
    return late_charge(connection, changed) or Outcome("applied", changed)


def intent_pending(connection: Connection, intent: dict[str, Any]) -> Outcome:
    """The provider is processing the charge: unsettled becomes pending, with the intent to look at."""
    match = _intent_match(intent)
    if (order_id := _lock_payer(connection, match)) is None:
        return Outcome("unknown")
    guard = PAYMENTS.c.status.in_(UNSETTLED[:2])
    changed = ledger.write_where(connection, match, guard, status=PaymentStatus.PENDING.value, intent_id=intent["id"])
    return Outcome("applied", changed) if changed else Outcome("unchanged", order_id)


def intent_failed(connection: Connection, intent: dict[str, Any]) -> Outcome:
    """An unsettled payment becomes declined; a succeeded one stays succeeded (a failed try can precede success)."""
    match = _intent_match(intent)
    if (order_id := _lock_payer(connection, match)) is None:
        return Outcome("unknown")
    error = intent.get("last_payment_error") or {}
    reason = str(error.get("message") or intent.get("cancellation_reason") or "the payment did not succeed")[:1000]
    changed = ledger.write_where(connection, match, PAYMENTS.c.status.in_(UNSETTLED), status="declined", error=reason)
    return Outcome("applied", changed) if changed else Outcome("unchanged", order_id)


def refund_changed(connection: Connection, refund: dict[str, Any]) -> Outcome:
    """Record the refund with its status; a failed refund of a cancelled order parks it; after shipment, alert."""
    metadata = refund.get("metadata") or {}
    if not isinstance(refund.get("amount"), int) or refund["amount"] <= 0 or not refund.get("id"):
        raise ValueError("a refund needs an id and a positive amount")
    known = _known(connection, _match(None, refund.get("payment_intent"))) or _known(
        connection, _match(order_id_in(metadata), None)
    )
    if known is None:
        # A charge whose answer we lost has no intent id yet: the refund may be of it, so have it redelivered.
        in_doubt = exists().where(PAYMENTS.c.intent_id.is_(None), PAYMENTS.c.status == PaymentStatus.IN_DOUBT.value)
        if connection.scalar(select(in_doubt)):
            raise NotSettled("the refunded charge may be one whose answer we lost")
        return Outcome("unknown")
    status, order_id, payment_id = known
    if status != PaymentStatus.SUCCEEDED:
        if status == PaymentStatus.DECLINED:
            return Outcome("unchanged", order_id)
        raise NotSettled("the refunded charge's payment is not settled yet")
    ours = metadata.get("origin") == ORIGIN
    found = Refund(
        refund["id"], str(refund.get("status") or "pending"), int(refund["amount"]), ours, refund.get("failure_reason")
    )
    order = lock_order(connection, order_id)  # the order's events are numbered under its row lock
    before = ledger.refund_status(connection, found.refund_id)
    ledger.record_refund(connection, payment_id, found)
    if not ours and found.status == "succeeded" and before != "succeeded":
        # Money given back outside the saga (the provider's dashboard): the shop hears of it once per refund.
        emit(connection, order, order_events.REFUNDED, refund={"id": found.refund_id, "amount": found.amount_cents})
    return _after_refund(connection, order_id, found)


def dispute_changed(connection: Connection, dispute: dict[str, Any]) -> Outcome:
    """Record the dispute's status (a closed dispute is never reopened by a late event); after shipment, alert."""
    match = _match(None, dispute.get("payment_intent"))
    not_closed = or_(
        PAYMENTS.c.dispute_id.is_distinct_from(dispute["id"]), PAYMENTS.c.dispute_status.not_in(FINAL_DISPUTES)
    )
    values = {"dispute_id": dispute["id"], "dispute_status": str(dispute.get("status") or "needs_response")[:32]}
    known = _known(connection, match)
    order = lock_order(connection, known[1]) if known else None  # the order's events are numbered under its lock
    disputed_before = connection.scalar(select(PAYMENTS.c.dispute_id).where(match)) if known else None
    changed = ledger.write_where(connection, match, not_closed, **values)
    if changed is None:
        return _unchanged(connection, match)
    if order is not None and disputed_before != dispute["id"]:
        emit(
            connection, order, order_events.DISPUTED, dispute={"id": dispute["id"], "status": values["dispute_status"]}
        )
    if _status(connection, changed) == OrderStatus.SHIPPED:
        metrics.AFTER_SHIPMENT.labels("dispute").inc()
        return Outcome("applied", changed, alert="dispute after shipment")
    return Outcome("applied", changed)


def late_charge(connection: Connection, order_id: uuid.UUID) -> Outcome | None:
    """A cancelled order holding money gets its refund re-run through the compensation; None if not cancelled."""
    order = lock_order(connection, order_id)
    if order.status != OrderStatus.CANCELLED:
        return None
    why = "money arrived after the cancel: refunding it"
    note = timeline_row(
        "refund_payment",
        StepKind.COMPENSATION,
        StepOutcome.STARTED,
        datetime.now(UTC),
        error_code="LATE_CHARGE",
        error_message=why,
    )
    advance(connection, order, OrderStatus.COMPENSATING, "refund_payment", get_settings().step_lease_s, note)
    metrics.LATE_CHARGES.inc()
    return Outcome("applied", order_id, send="refund_payment", alert="charge after cancel: refunding")


def _after_refund(connection: Connection, order_id: uuid.UUID, refund: Refund) -> Outcome:
    status = _status(connection, order_id)
    if status == OrderStatus.SHIPPED and not refund.ours:
        metrics.AFTER_SHIPMENT.labels("refund").inc()
        return Outcome("applied", order_id, alert="refund after shipment")
    if refund.status == "failed" and status == OrderStatus.CANCELLED:
        order = lock_order(connection, order_id)
        park(
            connection,
            order,
            "refund_payment",
            StepKind.COMPENSATION,
            datetime.now(UTC),
            get_settings().step_lease_s,
            error_code="REFUND_FAILED",
            error_message=refund.failure_reason,
        )
        metrics.REFUNDS_FAILED.inc()
        return Outcome("applied", order_id, alert="refund failed after the cancel")
    return Outcome("applied", order_id)


def _status(connection: Connection, order_id: uuid.UUID) -> str:
    return str(connection.scalar(select(ORDERS.c.status).where(ORDERS.c.id == order_id)))


HANDLERS = {
    "payment_intent.succeeded": intent_succeeded,
    "payment_intent.processing": intent_pending,
    "payment_intent.payment_failed": intent_failed,
    "payment_intent.canceled": intent_failed,
    "refund.created": refund_changed,
    "refund.updated": refund_changed,
    "refund.failed": refund_changed,
    "charge.refund.updated": refund_changed,
    "charge.dispute.created": dispute_changed,
    "charge.dispute.updated": dispute_changed,
    "charge.dispute.closed": dispute_changed,
}


def first_delivery(connection: Connection, event_id: str, event_type: str) -> bool:
    """Record the event id; False when it is already recorded (a concurrent twin waits here, then sees it)."""
    return connection.execute(_RECORD_EVENT, {"id": event_id, "type": event_type}).first() is not None


def apply(connection: Connection, event_type: str, data: dict[str, Any]) -> Outcome:
    """Apply one event's object inside the caller's transaction (which also records the event id)."""
    handler = HANDLERS.get(event_type)
    return handler(connection, data) if handler else Outcome("ignored")


# Money is kept only after a change to a payment (it settled succeeded after the cancel) or to a refund (it
# failed): the net reads the payments touched within the lookback (ix_payments_updated, ix_refunds_updated),
# not every cancelled order ever (320 ms at a million orders, every 8th reaper sweep). Anything older is
# `orderctl audit`'s "cancelled order kept money".
_KEPT_MONEY = text("""
    SELECT o.id FROM payments p JOIN orders o ON o.id = p.order_id
    -- The touched ids as one array, looked up by key (a join let the planner read every payment).
    WHERE p.id = ANY(ARRAY(
            SELECT id FROM payments WHERE updated_at > now() - make_interval(secs => :lookback_s)
            UNION SELECT payment_id FROM refunds WHERE updated_at > now() - make_interval(secs => :lookback_s)))
      AND o.status = 'cancelled' AND p.status = 'succeeded' AND p.dispute_status IS DISTINCT FROM 'lost'
      AND p.amount_cents > (SELECT coalesce(sum(r.amount_cents), 0) FROM refunds r
                            WHERE r.payment_id = p.id AND r.status IN ('succeeded', 'pending', 'requires_action'))
    ORDER BY o.updated_at LIMIT :limit FOR UPDATE OF o SKIP LOCKED""")


def refund_kept_money(connection: Connection, lookback_s: float, limit: int = 100) -> list[uuid.UUID]:
    """Re-open cancelled orders whose charge the ledger shows unrefunded (a late success whose event was lost),
    among the payments changed in the last `lookback_s`.

    Returns the orders whose `refund_payment` the caller sends once the transaction has committed.
    """
    reopened = []
    for order_id in connection.scalars(_KEPT_MONEY, {"lookback_s": lookback_s, "limit": limit}).all():
        if late_charge(connection, order_id) is not None:
            reopened.append(order_id)
    return reopened


# Retention: an event id is kept long after Stripe stops redelivering it (3 days), then forgotten.
PRUNE_STRIPE_EVENTS = Prune(
    "webhook_events",
    "received_at",
    "stripe_event_ttl_s",
    text("""DELETE FROM webhook_events WHERE id = ANY(ARRAY(
                SELECT id FROM webhook_events WHERE received_at < now() - make_interval(secs => :older_than_s)
                ORDER BY received_at LIMIT :batch FOR UPDATE SKIP LOCKED))"""),
)

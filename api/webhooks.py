"""POST /v1/webhooks/stripe: Stripe's signed events correct the payment ledger, each once, in any order of arrival.

Stripe signs the body instead of sending a bearer token. Each event is recorded in webhook_events in the same
transaction as its effect, so a redelivery changes nothing. Every effect is one UPDATE guarded by the payment's
status, never a read-modify-write, so a late or repeated event cannot undo a newer state. The webhook never
moves an order: the saga's reconcile path does, and then finds the ledger already right.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import stripe
from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field, SecretStr, ValidationError
from sqlalchemy import ColumnElement, false, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.deps import DatabaseUrl, SettingsDep
from api.errors import ApiError, validation_details
from models.db import unit_of_work
from models.payments import Payment
from models.saga import WebhookEvent
from models.schemas import ErrorBody
from models.status import PaymentStatus
from pipeline.logs import get_logger

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)

SUCCEEDED, DECLINED = PaymentStatus.SUCCEEDED.value, PaymentStatus.DECLINED.value
UNSETTLED = (PaymentStatus.STARTED.value, PaymentStatus.IN_DOUBT.value)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "INVALID_SIGNATURE or INVALID_PAYLOAD (nothing recorded)"},
    409: {"model": ErrorBody, "description": "PAYMENT_NOT_SETTLED: a refund ahead of its charge; Stripe redelivers"},
    503: {"model": ErrorBody, "description": "WEBHOOKS_DISABLED: no signing secret is configured"},
}
Model = TypeVar("Model", bound=BaseModel)
OrderId = uuid.UUID | None
Match = ColumnElement[bool]


class EventData(BaseModel):
    object: dict[str, Any]


class StripeEvent(BaseModel):
    """The envelope of a Stripe event: its id, its type and the object it is about."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    data: EventData


class Intent(BaseModel):
    """The fields of a PaymentIntent the ledger needs."""

    id: str = Field(min_length=1, max_length=255)
    metadata: dict[str, Any] = {}
    last_payment_error: dict[str, Any] | None = None


class RefundedCharge(BaseModel):
    """The fields of a refunded Charge the ledger needs; Stripe copies the intent's metadata onto its charge."""

    payment_intent: str | None = Field(default=None, max_length=255)
    amount_refunded: int = Field(ge=0)
    metadata: dict[str, Any] = {}


@dataclass(frozen=True)
class Outcome:
    """What an event did: applied, unchanged, contradicts (the ledger), unknown (payment) or ignored (type)."""

    kind: str
    order_id: OrderId = None
    ledger_status: str | None = None


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes, not a re-encoding of parsed JSON."""
    return await request.body()


@router.post("/stripe", summary="Stripe events that correct the payment ledger", responses=ERRORS)
def stripe_webhook(
    payload: Annotated[bytes, Depends(raw_body)],
    settings: SettingsDep,
    database_url: DatabaseUrl,
    signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, bool]:
    """Verify, record and apply one event; 200 `{"received": true}` (plus `"duplicate": true` for a redelivery)."""
    event = verified_event(payload, signature, settings.stripe_webhook_secret)
    with unit_of_work(database_url) as session:
        if not first_delivery(session, event):
            return {"received": True, "duplicate": True}
        outcome = apply(session, event)
    log_outcome(event, outcome)
    return {"received": True}


def verified_event(payload: bytes, signature: str | None, secret: SecretStr | None) -> StripeEvent:
    """The event, if Stripe signed this body recently with our secret; 503 or 400 otherwise."""
    if secret is None or not secret.get_secret_value().strip():
        raise ApiError(503, "WEBHOOKS_DISABLED", "no Stripe webhook signing secret is configured")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret.get_secret_value())
    except stripe.SignatureVerificationError as error:
        reason = error.user_message
        raise ApiError(400, "INVALID_SIGNATURE", "the Stripe-Signature header does not verify", reason) from None
    # Bad UTF-8 or JSON raise ValueError; JSON that is not an object fails inside the SDK with AttributeError.
    except (ValueError, AttributeError, RecursionError):
        raise ApiError(400, "INVALID_PAYLOAD", "the body is not a Stripe event (JSON object)") from None
    return parsed(StripeEvent, event.to_dict())


def parsed(model: type[Model], data: Any) -> Model:
    """`data` read as `model`; 400 INVALID_PAYLOAD naming the missing or malformed fields otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details = validation_details(error.errors())
        raise ApiError(400, "INVALID_PAYLOAD", "the event lacks fields the ledger needs", details) from None


def first_delivery(session: Session, event: StripeEvent) -> bool:
    """Record the event id; False when it is already recorded (a concurrent twin waits here, then sees it)."""
    recorded = insert(WebhookEvent).values(id=event.id, type=event.type).on_conflict_do_nothing(index_elements=["id"])
    return session.execute(recorded.returning(WebhookEvent.id)).first() is not None


def apply(session: Session, event: StripeEvent) -> Outcome:
    handler = HANDLERS.get(event.type)
    return handler(session, event.data.object) if handler else Outcome("ignored")


def intent_succeeded(session: Session, data: dict[str, Any]) -> Outcome:
    """An unsettled payment becomes succeeded with this intent; a declined one stays declined (a contradiction)."""
    intent = parsed(Intent, data)
    order_id = order_id_in(intent.metadata)
    match = payment_of(order_id, intent.id)
    changed = guarded_update(session, match, Payment.status.in_(UNSETTLED), status=SUCCEEDED, intent_id=intent.id)
    return outcome(session, changed, match, order_id, contradiction=DECLINED)


def intent_failed(session: Session, data: dict[str, Any]) -> Outcome:
    """An unsettled payment becomes declined; a succeeded one stays succeeded (a failed try can precede success)."""
    intent = parsed(Intent, data)
    order_id = order_id_in(intent.metadata)
    match = payment_of(order_id, intent.id)
    reason = str((intent.last_payment_error or {}).get("message") or "payment_intent.payment_failed")[:1000]
    changed = guarded_update(session, match, Payment.status.in_(UNSETTLED), status=DECLINED, error=reason)
    return outcome(session, changed, match, order_id, contradiction=None)


def charge_refunded(session: Session, data: dict[str, Any]) -> Outcome:
    """Raise refunded_cents to the charge's total refunded (capped at the charge), on a succeeded payment only."""
    charge = parsed(RefundedCharge, data)
    order_id = order_id_in(charge.metadata)
    refunded = func.least(Payment.amount_cents, func.greatest(Payment.refunded_cents, charge.amount_refunded))
    guards = (Payment.status == SUCCEEDED, Payment.refunded_cents < refunded)
    changed = guarded_update(session, payment_of(None, charge.payment_intent), *guards, refunded_cents=refunded)
    # Classified by order when tagged: an in-doubt payment has no intent id until its success is recorded.
    result = outcome(session, changed, payment_of(order_id, charge.payment_intent), order_id, contradiction=DECLINED)
    if result.ledger_status in UNSETTLED:  # its payment_intent.succeeded is still on the way: refuse, unrecorded
        raise ApiError(409, "PAYMENT_NOT_SETTLED", "the refunded charge's payment is not settled yet; redeliver later")
    return result


def order_id_in(metadata: dict[str, Any]) -> OrderId:
    """The order a Stripe object is tagged with, if its metadata holds a well-formed order id."""
    try:
        return uuid.UUID(str(metadata["order_id"]))
    except (KeyError, ValueError):
        return None


def payment_of(order_id: OrderId, intent_id: str | None) -> Match:
    """The payment an object points at: by its order when tagged, else by intent id, else none."""
    if order_id is not None:
        return Payment.order_id == order_id
    return Payment.intent_id == intent_id if intent_id else false()


def guarded_update(session: Session, match: Match, *guards: Any, **values: Any) -> OrderId:
    """Set `values` on the matched payment if every guard holds; the order id of the row changed, if any."""
    changed = update(Payment).where(match, *guards).values(**values).returning(Payment.order_id)
    return session.scalar(changed)


def outcome(session: Session, changed: OrderId, match: Match, tagged: OrderId, contradiction: str | None) -> Outcome:
    """How a guarded update went; when it changed nothing, what the ledger holds instead (a read, never written)."""
    if changed is not None:
        return Outcome("applied", changed)
    row = session.execute(select(Payment.status, Payment.order_id).where(match)).first()
    if row is None:
        return Outcome("unknown", tagged)
    return Outcome("contradicts" if row.status == contradiction else "unchanged", row.order_id, row.status)


def log_outcome(event: StripeEvent, result: Outcome) -> None:
    """Info for the expected outcomes; a warning when no payment matches or the event contradicts the ledger."""
    ids = {"order_id": str(result.order_id) if result.order_id else None, "ledger_status": result.ledger_status}
    known = {key: value for key, value in ids.items() if value is not None}
    bound = log.bind(event_id=event.id, event_type=event.type, outcome=result.kind, **known)
    if result.kind in ("unknown", "contradicts"):
        bound.warning("stripe_event_needs_attention")
    else:
        bound.info("stripe_event_handled")


Handler = Callable[[Session, dict[str, Any]], Outcome]
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": intent_succeeded,
    "payment_intent.payment_failed": intent_failed,
    "charge.refunded": charge_refunded,
}

"""POST /v1/webhooks/stripe: Stripe's signed events correct the payment ledger, each once, in any order of arrival.

Stripe signs the body instead of sending a bearer token. Each event is recorded in webhook_events (by
`pipeline.payment_events`, its one writer) in the same transaction as its effect, so a redelivery changes
nothing. What an event does is `pipeline.payment_events`: the ledger follows the provider, and an order moves
only where money demands it (a charge that arrived after the cancel is refunded; a refund that failed after the
cancel parks the order). An event about a charge we have not settled yet is refused 409, unrecorded, so Stripe
delivers it again later.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field, SecretStr, ValidationError

from api.deps import DatabaseUrl, SettingsDep
from api.errors import ApiError, validation_details
from api.openapi_docs import UNAVAILABLE, WITH_BODY, Responses, error
from models.db import transaction
from pipeline import payment_events
from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.payment_events import NotSettled, Outcome
from workers.enqueue import send

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)

# Without a signing secret the route is not served at all (404), and not in the schema.
ERRORS: Responses = {
    **WITH_BODY,
    400: error("INVALID_SIGNATURE, INVALID_PAYLOAD or MALFORMED_JSON (nothing recorded)"),
    409: error("PAYMENT_NOT_SETTLED: about a charge not settled yet; Stripe redelivers"),
    422: error("VALIDATION_ERROR: a header breaks the documented rules"),
    **UNAVAILABLE,
}
Model = TypeVar("Model", bound=BaseModel)


class EventData(BaseModel):
    object: dict[str, Any]


class StripeEvent(BaseModel):
    """The envelope of a Stripe event: its id, its type and the object it is about."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    data: EventData


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes, not a re-encoding of parsed JSON."""
    return await request.body()


@router.post("/stripe", summary="Stripe events that correct the payment ledger", responses=ERRORS)
def receive_stripe_event(
    payload: Annotated[bytes, Depends(raw_body)],
    settings: SettingsDep,
    database_url: DatabaseUrl,
    signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> dict[str, bool]:
    """Verify, record and apply one event; 200 `{"received": true}` (plus `"duplicate": true` for a redelivery)."""
    assert settings.stripe_webhook_secret is not None  # the route is served only with a secret (`enabled`)
    event = verified_event(payload, signature, settings.stripe_webhook_secret)
    try:
        with transaction(database_url) as connection:
            if not payment_events.first_delivery(connection, event.id, event.type):
                return {"received": True, "duplicate": True}
            outcome = payment_events.apply(connection, event.type, event.data.object)
    except NotSettled as refused:
        raise ApiError(409, "PAYMENT_NOT_SETTLED", f"{refused}; redeliver later") from None
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "INVALID_PAYLOAD", "the event lacks fields the ledger needs") from None
    if outcome.send and outcome.order_id:
        send(outcome.send, outcome.order_id)  # after the commit; a lost send is re-driven by the reaper
    log_outcome(event, outcome)
    return {"received": True}


def enabled(settings: Settings) -> bool:
    """Whether Stripe's events can be verified: a signing secret is configured (blank counts as none)."""
    secret = settings.stripe_webhook_secret
    return secret is not None and bool(secret.get_secret_value().strip())


def verified_event(payload: bytes, signature: str | None, secret: SecretStr) -> StripeEvent:
    """The event, if Stripe signed this body recently with our secret; 400 otherwise."""
    import stripe  # here, not at the top: only this route needs the SDK, so importing api.app does not load it

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


def log_outcome(event: StripeEvent, result: Outcome) -> None:
    """Info for the expected outcomes; a warning when no payment matches, an error when a person should look."""
    known = {"order_id": str(result.order_id)} if result.order_id else {}
    bound = log.bind(event_id=event.id, event_type=event.type, outcome=result.kind, **known)
    if result.alert:
        bound.error("stripe_event_needs_attention", alert=result.alert)
    elif result.kind == "unknown":
        bound.warning("stripe_event_unmatched")
    else:
        bound.info("stripe_event_handled")

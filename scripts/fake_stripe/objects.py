"""Stripe wire formats: ids, form decoding, error bodies, the documented test payment methods."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
Reply = tuple[int, Json]

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A Stripe-looking object id such as `pi_3Qx...` (24 random characters)."""
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def now() -> int:
    """Unix seconds, as Stripe's `created` fields."""
    return int(time.time())


def decode_form(pairs: Iterable[tuple[str, str]]) -> Json:
    """Turn the SDK's bracketed form keys (`metadata[order_id]`, `expand[0]`) into nested dicts."""
    root: Json = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + [part.rstrip("]") for part in rest.split("[")] if rest else [head]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"conflicting form keys at {key!r}")
        node[path[-1]] = value
    return root


def error_object(kind: str, message: str, *, code: str | None = None, param: str | None = None, **extra: Any) -> Json:
    """The inside of Stripe's error envelope: type, code, message, param and extras."""
    err: Json = {"type": kind, "message": message}
    if code:
        err["code"] = code
        err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        err["param"] = param
    err.update(extra)
    return err


def error_body(kind: str, message: str, *, code: str | None = None, param: str | None = None, **extra: Any) -> Json:
    """Stripe's error envelope: {"error": {"type", "code", "message", "param", ...}}."""
    return {"error": error_object(kind, message, code=code, param=param, **extra)}


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> Reply:
    """A 400 invalid_request_error."""
    return 400, error_body("invalid_request_error", message, code=code, param=param)


def missing(kind: str, object_id: str, param: str, status: int = 404) -> Reply:
    """Stripe's `resource_missing` answer for an unknown id."""
    return status, error_body(
        "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


@dataclass(frozen=True)
class Outcome:
    """What confirming with a test payment method does: succeed, or decline with these codes."""

    code: str | None = None
    decline_code: str | None = None
    message: str = ""
    authenticates: bool = False  # the issuer always asks for 3-D Secure first

    @property
    def succeeds(self) -> bool:
        return self.code is None


TEST_PAYMENT_METHODS: dict[str, Outcome] = {
    "pm_card_visa": Outcome(),
    "pm_card_mastercard": Outcome(),
    "pm_card_amex": Outcome(),
    "pm_card_chargeDeclined": Outcome("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": Outcome(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": Outcome("expired_card", "expired_card", "Your card has expired."),
    "pm_card_authenticationRequired": Outcome(authenticates=True),
}
_AUTHENTICATE = "Your card was declined. This transaction requires authentication."
AUTHENTICATION_REQUIRED = Outcome("authentication_required", "authentication_required", _AUTHENTICATE)
PROCESSING_DECLINED = Outcome("card_declined", "generic_decline", "Your card was declined.")

_BRANDS = {"pm_card_mastercard": "mastercard", "pm_card_amex": "amex"}


def payment_method_object(pm: str) -> Json:
    """A minimal card PaymentMethod, as embedded in `last_payment_error`."""
    card = {"brand": _BRANDS.get(pm, "visa"), "last4": "4242", "exp_month": 12, "exp_year": 2034}
    return {"id": pm, "object": "payment_method", "type": "card", "card": card, "livemode": False}


def card_error(outcome: Outcome, pm: str, charge_id: str) -> Json:
    """The `last_payment_error` / error body of a declined confirmation."""
    extra: Json = {"charge": charge_id, "payment_method": payment_method_object(pm)}
    if outcome.decline_code:
        extra["decline_code"] = outcome.decline_code
    return error_object("card_error", outcome.message, code=outcome.code, **extra)


def intent_object(amount: int, currency: str, pm: str | None, meta: dict[str, str], description: Any) -> Json:
    """A new PaymentIntent, before any confirmation."""
    intent_id = new_id("pi")
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "currency": currency,
        "status": "requires_confirmation" if pm else "requires_payment_method",
        "metadata": meta,
        "payment_method": pm,
        "payment_method_types": ["card"],
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "client_secret": f"{intent_id}_secret_{new_id('s')[2:]}",
        "created": now(),
        "description": description,
        "latest_charge": None,
        "last_payment_error": None,
        "livemode": False,
        "next_action": None,
        "canceled_at": None,
        "cancellation_reason": None,
    }


def refund_object(pi: Json, amount: int, meta: dict[str, str], reason: Any, status: str = "succeeded") -> Json:
    """A refund of `amount` against the PaymentIntent's latest charge."""
    return {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "charge": pi["latest_charge"],
        "created": now(),
        "currency": pi["currency"],
        "failure_reason": None,
        "metadata": meta,
        "payment_intent": pi["id"],
        "reason": reason,
        "status": status,
    }

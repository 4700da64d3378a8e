"""PaymentIntents: create, confirm (succeed, decline, processing, requires_action), cancel, retrieve, settle."""

from __future__ import annotations

from .account import Account, clock
from .charges import charge_view, expand_intent, new_charge, settle_charge
from .objects import (
    AUTHENTICATION_REQUIRED,
    PROCESSING_DECLINED,
    TEST_PAYMENT_METHODS,
    Json,
    Outcome,
    Reply,
    card_error,
    error_object,
    intent_object,
    invalid,
    missing,
    now,
)
from .params import (
    CANCEL_PARAMS,
    CONFIRM_PARAMS,
    INTENT_PARAMS,
    ApiFailure,
    check_known,
    limit,
    metadata,
    parse_currency,
    positive_int,
    rejected,
    search_matcher,
)

CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture")
CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
OUTCOMES = ("succeeded", "failed")
_AUTHENTICATION_FAILURE = "payment_intent_authentication_failure"
_AUTHENTICATION_FAILED = "The provided PaymentMethod has failed authentication. Provide a new PaymentMethod."


def _payment_method(pm: object) -> str | None:
    if pm is not None and pm not in TEST_PAYMENT_METHODS:
        raise ApiFailure(missing("PaymentMethod", str(pm), "payment_method", 400))
    return None if pm is None else str(pm)


def create_intent(acct: Account, params: Json) -> Reply:
    """POST /v1/payment_intents: create, and confirm at once when `confirm=true`."""
    check_known(params, INTENT_PARAMS)
    amount, currency = positive_int(params, "amount"), parse_currency(params)
    pm, meta = _payment_method(params.get("payment_method")), metadata(params)
    pi = intent_object(amount, currency, pm, meta, params.get("description"))
    acct.save_intent(pi, "payment_intent.created")
    if params.get("confirm") == "true":
        return _attempt(acct, pi, pm, params)
    return 200, expand_intent(acct, pi, params)


def confirm_intent(acct: Account, intent_id: str, params: Json) -> Reply:
    """POST /v1/payment_intents/{id}/confirm."""
    check_known(params, CONFIRM_PARAMS)
    pi = acct.intent(intent_id)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
        msg = f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}."
        raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state"))
    return _attempt(acct, pi, _payment_method(params.get("payment_method") or pi["payment_method"]), params)


def _attempt(acct: Account, pi: Json, pm: str | None, params: Json) -> Reply:
    """One confirmation: decline, ask for authentication, start processing or succeed."""
    if pm is None:
        msg = "You cannot confirm this PaymentIntent because it's missing a payment method."
        raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state", param="payment_method"))
    outcome, f = TEST_PAYMENT_METHODS[pm], acct.faults
    if not outcome.succeeds:
        return _decline(acct, pi, pm, outcome)
    draw = acct.injector.roll() if f.requires_action_rate or f.processing_rate else 1.0
    if outcome.authenticates or draw < f.requires_action_rate:
        if params.get("error_on_requires_action") == "true":  # fail rather than wait on the customer
            return _decline(acct, pi, pm, AUTHENTICATION_REQUIRED)
        pi.update(status="requires_action", payment_method=pm, last_payment_error=None)
        pi["next_action"] = {"type": "use_stripe_sdk"}
        acct.save_intent(pi, "payment_intent.requires_action")
        return 200, expand_intent(acct, pi, params)
    charge = new_charge(acct, pi, pm, "pending")
    pi.update(payment_method=pm, last_payment_error=None, next_action=None)
    if draw < f.requires_action_rate + f.processing_rate:
        pi["status"] = "processing"
        acct.emit("charge.pending", charge_view(acct, charge["id"]))
        acct.save_intent(pi, "payment_intent.processing")
        failing = acct.injector.chance(f.processing_failure_rate)
        acct.schedule(pi["id"], f.processing_delay_s, "failed" if failing else "succeeded")
        return 200, expand_intent(acct, pi, params)
    _succeed(acct, pi, charge)
    return 200, expand_intent(acct, pi, params)


def _succeed(acct: Account, pi: Json, charge: Json) -> None:
    settle_charge(charge)
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None, next_action=None)
    acct.emit("charge.succeeded", charge_view(acct, charge["id"]))
    acct.save_intent(pi, "payment_intent.succeeded")


def _decline(acct: Account, pi: Json, pm: str, outcome: Outcome) -> Reply:
    charge = new_charge(acct, pi, pm, "failed")
    settle_charge(charge, outcome)
    err = card_error(outcome, pm, charge["id"])
    pi.update(status="requires_payment_method", payment_method=None, last_payment_error=err, next_action=None)
    pi["amount_received"] = 0
    acct.emit("charge.failed", charge_view(acct, charge["id"]))
    acct.save_intent(pi, "payment_intent.payment_failed")
    return 402, {"error": {**err, "payment_intent": pi}}


def cancel_intent(acct: Account, intent_id: str, params: Json) -> Reply:
    """POST /v1/payment_intents/{id}/cancel: only before the money moves (not processing, succeeded, canceled)."""
    check_known(params, CANCEL_PARAMS)
    reason = params.get("cancellation_reason") or None
    if reason is not None and reason not in CANCEL_REASONS:
        msg = f"Invalid cancellation_reason: must be one of {', '.join(CANCEL_REASONS)}"
        raise rejected(msg, code="parameter_invalid_string", param="cancellation_reason")
    pi = acct.intent(intent_id)
    if pi["status"] not in CANCELABLE:
        msg = (
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a PaymentIntent "
            f"with one of the following statuses may be canceled: {', '.join(CANCELABLE)}."
        )
        raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state"))
    pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason, next_action=None)
    acct.save_intent(pi, "payment_intent.canceled")
    return 200, expand_intent(acct, pi, params)


def retrieve_intent(acct: Account, intent_id: str, params: Json) -> Reply:
    """GET /v1/payment_intents/{id}: always the current state (only search lags)."""
    return 200, expand_intent(acct, acct.intent(intent_id), params)


def search_intents(acct: Account, params: Json) -> Reply:
    """GET /v1/payment_intents/search, newest first, each intent as it was `search_lag_s` ago."""
    matches, size, lag = search_matcher(str(params.get("query", ""))), limit(params), acct.faults.search_lag_s
    seen = acct.intents_as_of(clock() - lag) if lag else list(acct.intents.values())
    found = [pi for pi in reversed(seen) if matches(pi)]
    page = {"object": "search_result", "url": "/v1/payment_intents/search", "has_more": len(found) > size}
    return 200, {**page, "data": found[:size], "next_page": None}


def settle_intent(acct: Account, intent_id: str, outcome: str) -> Reply:
    """End a processing intent (or a requires_action one, as the customer would) as `succeeded` or `failed`."""
    pi = acct.intent(intent_id)
    if outcome not in OUTCOMES:
        return invalid(f"outcome must be one of {', '.join(OUTCOMES)}", param="outcome")
    acct.timers.pop(intent_id, None)
    if pi["status"] == "processing":
        charge = acct.charges[pi["latest_charge"]]
        if outcome == "succeeded":
            _succeed(acct, pi, charge)
            return 200, pi
        settle_charge(charge, PROCESSING_DECLINED)
        err = card_error(PROCESSING_DECLINED, pi["payment_method"], charge["id"])
        acct.emit("charge.failed", charge_view(acct, charge["id"]))
    elif pi["status"] == "requires_action":
        if outcome == "succeeded":
            _succeed(acct, pi, new_charge(acct, pi, pi["payment_method"], "pending"))
            return 200, pi
        err = error_object("invalid_request_error", _AUTHENTICATION_FAILED, code=_AUTHENTICATION_FAILURE)
    else:
        msg = f"This PaymentIntent has a status of {pi['status']}: only processing or requires_action ones settle."
        return invalid(msg, code="payment_intent_unexpected_state")
    pi.update(status="requires_payment_method", payment_method=None, last_payment_error=err, next_action=None)
    pi["amount_received"] = 0
    acct.save_intent(pi, "payment_intent.payment_failed")
    return 200, pi

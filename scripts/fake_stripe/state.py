"""In-memory Stripe account: PaymentIntents, refunds and saved idempotent responses, behind one lock."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .objects import (
    TEST_PAYMENT_METHODS,
    Json,
    Reply,
    card_error,
    error_body,
    intent_object,
    invalid,
    missing,
    new_id,
    refund_object,
)
from .params import (
    CONFIRM_PARAMS,
    INTENT_PARAMS,
    REFUND_PARAMS,
    ApiFailure,
    check_known,
    limit,
    metadata,
    parse_currency,
    positive_int,
    rejected,
    search_matcher,
)

Fingerprint = tuple[str, str, tuple[tuple[str, str], ...]]
_LEDGER_FIELDS = ("id", "status", "amount", "amount_received", "currency", "metadata", "created", "latest_charge")


@dataclass(frozen=True)
class Saved:
    """A response stored under an idempotency key."""

    fingerprint: Fingerprint
    status: int
    body: bytes


class Store:
    """One Stripe test-mode account held in memory; every operation runs under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every object and every idempotency key."""
        with self._lock:
            self.intents: dict[str, Json] = {}
            self.refunds: dict[str, Json] = {}
            self.refunded: dict[str, int] = {}
            self.saved: dict[tuple[str, str], Saved] = {}

    def execute(
        self, api_key: str, idem_key: str | None, fingerprint: Fingerprint, op: Callable[[], Reply]
    ) -> tuple[int, bytes, bool]:
        """Run `op` atomically, honouring Idempotency-Key; returns (status, body, replayed)."""
        with self._lock:
            saved = self.saved.get((api_key, idem_key)) if idem_key else None
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    msg = (
                        f"Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{idem_key}' if you meant to execute a different "
                        f"request."
                    )
                    return 400, json.dumps(error_body("idempotency_error", msg)).encode(), False
                return saved.status, saved.body, True
            save = True
            try:
                status, body = op()
            except ApiFailure as failure:
                (status, body), save = failure.reply, failure.saved
            data = json.dumps(body).encode()  # snapshot now: later changes must not leak into a replay
            if idem_key and save:
                self.saved[(api_key, idem_key)] = Saved(fingerprint, status, data)
            return status, data, False

    def intent(self, intent_id: str, param: str = "intent", status: int = 404) -> Json:
        """The PaymentIntent with this id, or a resource_missing failure."""
        if intent_id not in self.intents:
            raise ApiFailure(missing("payment_intent", intent_id, param, status))
        return self.intents[intent_id]

    def create_intent(self, params: Json) -> Reply:
        """POST /v1/payment_intents: create, and confirm at once when `confirm=true`."""
        check_known(params, INTENT_PARAMS)
        amount, currency = positive_int(params, "amount"), parse_currency(params)
        pm, meta = params.get("payment_method"), metadata(params)
        if pm is not None and pm not in TEST_PAYMENT_METHODS:
            raise ApiFailure(missing("PaymentMethod", str(pm), "payment_method", 400))
        pi = intent_object(amount, currency, pm, meta, params.get("description"))
        self.intents[pi["id"]] = pi
        if params.get("confirm") == "true":
            return self._attempt(pi, pm)
        return 200, pi

    def confirm_intent(self, intent_id: str, params: Json) -> Reply:
        """POST /v1/payment_intents/{id}/confirm."""
        check_known(params, CONFIRM_PARAMS)
        pi = self.intent(intent_id)
        if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
            msg = f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}."
            raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state"))
        pm = params.get("payment_method") or pi["payment_method"]
        if pm is not None and pm not in TEST_PAYMENT_METHODS:
            raise ApiFailure(missing("PaymentMethod", str(pm), "payment_method", 400))
        return self._attempt(pi, pm)

    def _attempt(self, pi: Json, pm: str | None) -> Reply:
        if pm is None:
            msg = "You cannot confirm this PaymentIntent because it's missing a payment method."
            raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state", param="payment_method"))
        outcome, charge_id = TEST_PAYMENT_METHODS[pm], new_id("ch")
        pi["latest_charge"] = charge_id
        if outcome.succeeds:
            pi.update(status="succeeded", payment_method=pm, amount_received=pi["amount"], last_payment_error=None)
            return 200, pi
        err = card_error(outcome, pm, charge_id)
        pi.update(status="requires_payment_method", payment_method=None, last_payment_error=err)
        return 402, {"error": {**err, "payment_intent": pi}}

    def search_intents(self, params: Json) -> Reply:
        """GET /v1/payment_intents/search, newest first."""
        matches = search_matcher(str(params.get("query", "")))
        size = limit(params)
        found = [pi for pi in reversed(self.intents.values()) if matches(pi)]
        page = {"object": "search_result", "url": "/v1/payment_intents/search", "has_more": len(found) > size}
        return 200, {**page, "data": found[:size], "next_page": None}

    def create_refund(self, params: Json) -> Reply:
        """POST /v1/refunds: refund part or all of what is left on the charge."""
        check_known(params, REFUND_PARAMS)
        charge = params.get("charge")
        by_charge = (pi["id"] for pi in self.intents.values() if charge and pi["latest_charge"] == charge)
        intent_id = params.get("payment_intent") or next(by_charge, None)
        if not intent_id:
            msg = "One of the following params should be provided for this request: payment_intent or charge."
            raise rejected(msg, code="parameter_missing")
        pi = self.intent(str(intent_id), "payment_intent", 400)
        if pi["status"] != "succeeded":
            msg = f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
            raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state"))
        remaining = pi["amount_received"] - self.refunded.get(pi["id"], 0)
        if remaining <= 0:
            msg = f"Charge {pi['latest_charge']} has already been refunded."
            raise ApiFailure(invalid(msg, code="charge_already_refunded"))
        amount = positive_int(params, "amount") if "amount" in params else remaining
        if amount > remaining:
            msg = (
                f"Refund amount ({amount / 100:.2f}) is greater than unrefunded amount on charge "
                f"({remaining / 100:.2f})"
            )
            raise ApiFailure(invalid(msg, code="amount_too_large", param="amount"))
        refund = refund_object(pi, amount, metadata(params), params.get("reason"))
        self.refunds[refund["id"]] = refund
        self.refunded[pi["id"]] = self.refunded.get(pi["id"], 0) + amount
        return 200, refund

    def refund(self, refund_id: str) -> Reply:
        """GET /v1/refunds/{id}."""
        if refund_id not in self.refunds:
            raise ApiFailure(missing("refund", refund_id, "id"))
        return 200, self.refunds[refund_id]

    def list_refunds(self, params: Json) -> Reply:
        """GET /v1/refunds, filtered by payment_intent or charge, newest first."""
        wanted = {k: params[k] for k in ("payment_intent", "charge") if k in params}
        found = [r for r in reversed(self.refunds.values()) if all(r[k] == v for k, v in wanted.items())]
        size = limit(params)
        return 200, {"object": "list", "url": "/v1/refunds", "has_more": len(found) > size, "data": found[:size]}

    def ledger(self) -> list[Json]:
        """Every PaymentIntent with what it charged and what was refunded, for audits."""
        with self._lock:
            return [
                {key: pi[key] for key in _LEDGER_FIELDS}
                | {
                    "amount_refunded": self.refunded.get(pi["id"], 0),
                    "refunds": [r["id"] for r in self.refunds.values() if r["payment_intent"] == pi["id"]],
                }
                for pi in self.intents.values()
            ]

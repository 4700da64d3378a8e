"""Refunds: created succeeded or pending (a pending one already holds the money), settled later, listed."""

from __future__ import annotations

from .account import Account
from .charges import charge_view, dispute_of, refunded_amount
from .objects import Json, Reply, invalid, missing, refund_object
from .params import REFUND_PARAMS, ApiFailure, check_known, limit, metadata, positive_int, rejected

STATUSES = ("succeeded", "pending")
OUTCOMES = ("succeeded", "failed")
FAILURE_REASON = "expired_or_canceled_card"


def create_refund(acct: Account, params: Json, status: str | None = None) -> Reply:
    """POST /v1/refunds: refund part or all of what is left on the charge; `status` overrides the pending knob."""
    check_known(params, REFUND_PARAMS)
    intent_id = params.get("payment_intent") or _intent_of_charge(acct, params.get("charge"))
    if not intent_id:
        msg = "One of the following params should be provided for this request: payment_intent or charge."
        raise rejected(msg, code="parameter_missing")
    pi = acct.intent(str(intent_id), "payment_intent", 400)
    if pi["status"] != "succeeded":
        msg = f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
        raise ApiFailure(invalid(msg, code="payment_intent_unexpected_state"))
    dispute = dispute_of(acct, pi["latest_charge"])
    if dispute is not None and dispute["status"] != "won":
        msg = f"Charge {pi['latest_charge']} has been charged back; cannot issue a refund."
        raise ApiFailure(invalid(msg, code="charge_disputed"))
    remaining = pi["amount_received"] - refunded_amount(acct, pi["latest_charge"])
    if remaining <= 0:
        msg = f"Charge {pi['latest_charge']} has already been refunded."
        raise ApiFailure(invalid(msg, code="charge_already_refunded"))
    amount = positive_int(params, "amount") if "amount" in params else remaining
    if amount > remaining:
        msg = f"Refund amount ({amount / 100:.2f}) is greater than unrefunded amount on charge ({remaining / 100:.2f})"
        raise ApiFailure(invalid(msg, code="amount_too_large", param="amount"))
    f = acct.faults
    status = status or ("pending" if acct.injector.chance(f.refund_pending_rate) else "succeeded")
    refund = refund_object(pi, amount, metadata(params), params.get("reason"), status)
    acct.add_refund(refund)
    if status == "pending":
        failing = acct.injector.chance(f.refund_failure_rate)
        acct.schedule(refund["id"], f.refund_settle_s, "failed" if failing else "succeeded")
    acct.emit("charge.refunded", charge_view(acct, refund["charge"]))
    acct.emit("refund.created", refund)
    return 200, refund


def _intent_of_charge(acct: Account, charge_id: object) -> str | None:
    """The intent whose latest charge this is (an earlier, failed attempt's charge has nothing to refund)."""
    charge = acct.charges.get(str(charge_id)) if charge_id else None
    if charge is None or acct.intents[charge["payment_intent"]]["latest_charge"] != charge["id"]:
        return None
    return str(charge["payment_intent"])


def settle_refund(acct: Account, refund_id: str, outcome: str) -> Reply:
    """End a pending refund: `succeeded`, or `failed` (the money goes back onto the charge)."""
    _, refund = retrieve_refund(acct, refund_id)
    if outcome not in OUTCOMES:
        return invalid(f"outcome must be one of {', '.join(OUTCOMES)}", param="outcome")
    if refund["status"] != "pending":
        return invalid(f"Refund {refund_id} has a status of {refund['status']}: only pending refunds settle.")
    acct.timers.pop(refund_id, None)
    refund["status"] = outcome
    if outcome == "failed":
        refund["failure_reason"] = FAILURE_REASON
    acct.emit("charge.refund.updated", refund)
    acct.emit("refund.updated", refund)
    if outcome == "failed":
        acct.emit("refund.failed", refund)
    return 200, refund


def retrieve_refund(acct: Account, refund_id: str) -> Reply:
    """GET /v1/refunds/{id}."""
    if refund_id not in acct.refunds:
        raise ApiFailure(missing("refund", refund_id, "id"))
    return 200, acct.refunds[refund_id]


def list_refunds(acct: Account, params: Json) -> Reply:
    """GET /v1/refunds, filtered by payment_intent or charge, newest first, of every status."""
    wanted = {k: params[k] for k in ("payment_intent", "charge") if k in params}
    found = [r for r in reversed(acct.refunds.values()) if all(r[k] == v for k, v in wanted.items())]
    size = limit(params)
    return 200, {"object": "list", "url": "/v1/refunds", "has_more": len(found) > size, "data": found[:size]}

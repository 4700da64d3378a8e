"""Charges: one per confirmation attempt, with their refunds and disputes read from the account's records."""

from __future__ import annotations

from .account import Account
from .objects import Json, Outcome, Reply, missing, new_id, now

TAKEN = ("succeeded", "pending")  # refunds that hold the money: a pending refund has already left the balance


def new_charge(acct: Account, pi: Json, pm: str, status: str) -> Json:
    """A charge of the whole intent amount (`pending` or, via settle_charge, `succeeded`/`failed`)."""
    charge = {
        "id": new_id("ch"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": 0,
        "balance_transaction": None,
        "captured": False,
        "created": now(),
        "currency": pi["currency"],
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": dict(pi["metadata"]),  # Stripe copies the intent's metadata onto the charge
        "paid": False,
        "payment_intent": pi["id"],
        "payment_method": pm,
        "status": status,
    }
    acct.charges[charge["id"]] = charge
    pi["latest_charge"] = charge["id"]
    return charge


def settle_charge(charge: Json, decline: Outcome | None = None) -> None:
    """Mark the charge succeeded (captured in full) or, with a decline, failed."""
    if decline is None:
        charge.update(status="succeeded", amount_captured=charge["amount"], captured=True, paid=True)
        charge["balance_transaction"] = new_id("txn")
    else:
        charge.update(status="failed", failure_code=decline.code, failure_message=decline.message)


def refunds_of(acct: Account, charge_id: str) -> list[Json]:
    """The charge's refunds, newest first."""
    return list(reversed(acct.charge_refunds.get(charge_id, [])))


def refunded_amount(acct: Account, charge_id: str, statuses: tuple[str, ...] = TAKEN) -> int:
    """What the charge's refunds in `statuses` add up to."""
    return sum(r["amount"] for r in refunds_of(acct, charge_id) if r["status"] in statuses)


def dispute_of(acct: Account, charge_id: str) -> Json | None:
    """The charge's dispute, if one was opened (a charge has at most one)."""
    return acct.charge_disputes.get(charge_id)


def charge_view(acct: Account, charge_id: str) -> Json:
    """The Charge as the API shows it: amount_refunded counts succeeded and pending refunds, as Stripe does."""
    charge = acct.charges[charge_id]
    refunds, refunded = refunds_of(acct, charge_id), refunded_amount(acct, charge_id)
    listing = {"object": "list", "data": refunds, "has_more": False, "total_count": len(refunds)}
    return charge | {
        "amount_refunded": refunded,
        "refunded": charge["amount_captured"] > 0 and refunded >= charge["amount_captured"],
        "disputed": dispute_of(acct, charge_id) is not None,
        "refunds": listing | {"url": f"/v1/charges/{charge_id}/refunds"},
    }


def retrieve_charge(acct: Account, charge_id: str) -> Reply:
    """GET /v1/charges/{id}."""
    if charge_id not in acct.charges:
        return missing("charge", charge_id, "id")
    return 200, charge_view(acct, charge_id)


def expand_intent(acct: Account, pi: Json, params: Json) -> Json:
    """The intent, with `latest_charge` inlined when the request asks for `expand[]=latest_charge`."""
    raw = params.get("expand") or ()
    wanted = set(raw.values() if isinstance(raw, dict) else [raw] if isinstance(raw, str) else raw)
    if "latest_charge" in wanted and pi["latest_charge"] in acct.charges:
        return pi | {"latest_charge": charge_view(acct, pi["latest_charge"])}
    return pi

"""Disputes (chargebacks): opened by the cardholder's bank on a succeeded charge, then won or lost."""

from __future__ import annotations

from .account import Account
from .charges import dispute_of, refunded_amount
from .objects import Reply, invalid, missing, new_id, now

CLOSED = ("won", "lost")
REASONS = (
    "bank_cannot_process check_returned credit_not_processed customer_initiated debit_not_authorized duplicate "
    "fraudulent general incorrect_account_details insufficient_funds product_not_received product_unacceptable "
    "subscription_canceled unrecognized"
).split()


def open_dispute(acct: Account, intent_id: str, reason: str = "fraudulent", amount: int | None = None) -> Reply:
    """Open a dispute on the intent's charge, for what the customer still paid unless `amount` says otherwise."""
    if intent_id not in acct.intents:
        return missing("payment_intent", intent_id, "payment_intent", 400)
    pi = acct.intents[intent_id]
    if pi["status"] != "succeeded":
        return invalid(f"PaymentIntent {intent_id} has a status of {pi['status']}: only a succeeded one is disputed.")
    charge_id = pi["latest_charge"]
    if dispute_of(acct, charge_id) is not None:
        return invalid(f"Charge {charge_id} already has a dispute.", code="charge_disputed")
    if reason not in REASONS:
        return invalid(f"reason must be one of {', '.join(REASONS)}", param="reason")
    kept = pi["amount_received"] - refunded_amount(acct, charge_id)
    amount = kept if amount is None else amount
    if not 1 <= amount <= kept:
        return invalid(f"The dispute amount must be between 1 and {kept} (what the charge still holds).")
    dispute = {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "currency": pi["currency"],
        "charge": charge_id,
        "payment_intent": intent_id,
        "reason": reason,
        "status": "needs_response",
        "created": now(),
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
    }
    acct.add_dispute(dispute)
    acct.emit("charge.dispute.created", dispute)
    return 200, dispute


def close_dispute(acct: Account, dispute_id: str, status: str) -> Reply:
    """Close an open dispute as `won` (the money stays) or `lost` (the disputed amount is withdrawn)."""
    if dispute_id not in acct.disputes:
        return missing("dispute", dispute_id, "id")
    dispute = acct.disputes[dispute_id]
    if status not in CLOSED:
        return invalid(f"status must be one of {', '.join(CLOSED)}", param="status")
    if dispute["status"] in CLOSED:
        return invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).")
    dispute["status"] = status
    acct.emit("charge.dispute.closed", dispute)
    return 200, dispute

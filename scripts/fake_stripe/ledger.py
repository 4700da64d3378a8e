"""The audit view of the account: per PaymentIntent, what it charged, gave back and lost to disputes."""

from __future__ import annotations

from collections import defaultdict

from .account import Account
from .objects import Json

_FIELDS = ("id", "status", "amount", "amount_received", "currency", "metadata", "created", "latest_charge")


def ledger_entry(pi: Json, refunds: list[Json], disputes: list[Json]) -> Json:
    """One intent: `amount_refunded` counts succeeded refunds only (money actually given back)."""
    return {key: pi[key] for key in _FIELDS} | {
        "amount_refunded": sum(r["amount"] for r in refunds if r["status"] == "succeeded"),
        "amount_refund_pending": sum(r["amount"] for r in refunds if r["status"] == "pending"),
        "refunds": [{"id": r["id"], "amount": r["amount"], "status": r["status"]} for r in refunds],
        "disputes": [{"id": d["id"], "amount": d["amount"], "status": d["status"]} for d in disputes],
        "amount_lost_to_disputes": sum(d["amount"] for d in disputes if d["status"] == "lost"),
    }


def ledger(acct: Account) -> list[Json]:
    """Every PaymentIntent, oldest first, for audits."""
    refunds: defaultdict[str, list[Json]] = defaultdict(list)
    disputes: defaultdict[str, list[Json]] = defaultdict(list)
    for refund in acct.refunds.values():
        refunds[refund["payment_intent"]].append(refund)
    for dispute in acct.disputes.values():
        disputes[dispute["payment_intent"]].append(dispute)
    return [ledger_entry(pi, refunds[pi["id"]], disputes[pi["id"]]) for pi in acct.intents.values()]

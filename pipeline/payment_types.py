"""What the saga knows of a charge and its refunds, in the provider's terms but without its SDK.

The ledger, the webhook's events and the steps share these; only pipeline.payments talks to Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.status import PaymentStatus

# Our refunds carry this in their metadata, so a refund event tells the saga's refunds from outside ones.
ORIGIN = "orderflow"
# Intent statuses that wait for the customer; off-session nobody will act, so the intent is cancelled.
NEEDS_CUSTOMER = frozenset({"requires_action", "requires_confirmation", "requires_capture"})


@dataclass(frozen=True)
class Charge:
    """A PaymentIntent as the saga sees it (status is Stripe's: `succeeded`, `requires_payment_method`, ...)."""

    intent_id: str
    status: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    """A refund as the provider reports it; `ours` when the saga asked for it."""

    refund_id: str
    status: str
    amount_cents: int
    ours: bool = True
    failure_reason: str | None = None


def ledger_status(intent_status: str) -> PaymentStatus:
    """What an intent's provider status means for our ledger: succeeded, pending (wait), or no money taken.

    An intent waiting for the customer is `pending` too: the caller cancels it at the provider first, so that
    it cannot succeed after the order is cancelled.
    """
    if intent_status == "succeeded":
        return PaymentStatus.SUCCEEDED
    if intent_status == "processing" or intent_status in NEEDS_CUSTOMER:
        return PaymentStatus.PENDING
    return PaymentStatus.DECLINED  # requires_payment_method (a failed attempt) or canceled

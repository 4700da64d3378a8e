"""The saga's money steps: charge once, refund what the provider says is left, and never guess.

Every conclusion about money comes from an authoritative answer of the provider: the intent retrieved
by id, the original request replayed under its idempotency key, the refunds listed for the intent.
Search results never prove that there was no charge (Stripe's search lags behind its writes).

The payments row is written either in the step's transaction (a success, which commits with the
step) or in a side transaction of its own (outcomes that must survive the step raising); never both
in one step, or the side transaction would wait for the row the step holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from models.status import PaymentStatus
from pipeline import ledger
from pipeline.adapters import Adapters
from pipeline.errors import (
    PaymentDeclined,
    PaymentDisputed,
    PaymentInDoubt,
    PaymentPending,
    RefundFailed,
    RefundPending,
)
from pipeline.ledger import DISPUTE_LOST, DISPUTE_WON, LedgerEntry
from pipeline.order_store import LockedOrder
from pipeline.payment_types import NEEDS_CUSTOMER, Charge, ledger_status

# Stripe keeps idempotency keys for at least 24 hours; older in-doubt attempts are looked up by search instead,
# whose index has caught up long before then.
KEY_WINDOW = timedelta(hours=23)


def charge_payment(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Charge the order total once: ledger first, then the provider, whose answer settles the ledger."""
    payment, _ = ledger.open_charge(adapters.database_url, order)
    if payment.status == PaymentStatus.SUCCEEDED:  # recorded by an earlier attempt, or by a webhook
        return
    if payment.status == PaymentStatus.DECLINED:
        raise PaymentDeclined(payment.error or "declined earlier")
    if payment.intent_id:  # the provider holds it pending: look again, never charge again
        charge = adapters.payments.retrieve(payment.intent_id)
    else:
        try:  # first try, or the replay of one whose answer was lost: Stripe answers the original under the key
            charge = adapters.payments.charge(
                order_id=str(order.id),
                amount_cents=order.total_cents,
                currency=order.currency.lower(),
                payment_method=order.payment_method_id,
                idempotency_key=payment.idempotency_key,
            )
        except PaymentInDoubt as error:
            ledger.mark(adapters.database_url, payment, PaymentStatus.IN_DOUBT, error.message)
            raise
        except PaymentDeclined as error:
            ledger.mark(adapters.database_url, payment, PaymentStatus.DECLINED, error.message)
            raise
    if _settled(adapters, payment, charge):
        ledger.charged(connection, payment, charge.intent_id)
        return
    raise PaymentDeclined(f"the payment ended {charge.status}", intent_id=charge.intent_id)


def refund_payment(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Give back what the provider says is still charged, once; True when a refund of ours exists."""
    payment = ledger.find(connection, order.id, lock=False)
    if payment is None or payment.status == PaymentStatus.DECLINED:
        return False
    intent_id = _money_taken(order, payment, adapters)
    if intent_id is None:
        return False
    if payment.dispute_status == DISPUTE_LOST:
        return False  # the bank already took the money back
    if payment.dispute_status is not None and payment.dispute_status != DISPUTE_WON:
        raise PaymentDisputed(f"a disputed charge ({payment.dispute_status}) cannot be refunded")
    seen = ledger.sync_refunds(adapters.database_url, payment.id, adapters.payments.refunds_of(intent_id))
    left = payment.amount_cents - seen.held_cents
    if left <= 0:
        if seen.pending:
            raise RefundPending("a refund is still pending at the provider")
        return seen.held_cents > 0
    if seen.saga_failed:
        raise RefundFailed("a refund failed at the provider: refund the customer another way, then retry")
    key = ledger.refund_key(order, left)
    refund = adapters.payments.refund(
        intent_id=intent_id, amount_cents=left, order_id=str(order.id), idempotency_key=key
    )
    ledger.sync_refunds(adapters.database_url, payment.id, [refund], key)
    if refund.status == "failed":
        raise RefundFailed(f"the refund failed at the provider: {refund.failure_reason or 'no reason given'}")
    if refund.status != "succeeded":
        raise RefundPending(f"the refund is {refund.status} at the provider")
    return True


def _money_taken(order: LockedOrder, payment: LedgerEntry, adapters: Adapters) -> str | None:
    """The intent holding the order's money, settled authoritatively; None when the provider took nothing."""
    if payment.status == PaymentStatus.SUCCEEDED:
        return payment.intent_id
    if payment.intent_id:  # pending at the provider
        charge: Charge | None = adapters.payments.retrieve(payment.intent_id)
    elif datetime.now(UTC) - payment.created_at > KEY_WINDOW:
        charge = adapters.payments.find_charge(order_id=str(order.id))
    else:
        charge = adapters.payments.resolve_charge(
            order_id=str(order.id),
            amount_cents=payment.amount_cents,
            currency=order.currency.lower(),
            payment_method=order.payment_method_id,
            idempotency_key=payment.idempotency_key,
        )
    if charge is None:
        ledger.mark(adapters.database_url, payment, PaymentStatus.DECLINED, "the provider holds no charge")
        return None
    if not _settled(adapters, payment, charge):
        return None
    ledger.mark(adapters.database_url, payment, PaymentStatus.SUCCEEDED, intent_id=charge.intent_id)
    return charge.intent_id


def _settled(adapters: Adapters, payment: LedgerEntry, charge: Charge) -> bool:
    """True for a succeeded charge; records and raises while it is pending; records a decline and says False.

    An intent waiting for the customer is cancelled first: off-session nobody authenticates it, and it must
    not succeed after the order is cancelled.
    """
    if charge.status in NEEDS_CUSTOMER:
        charge = adapters.payments.cancel(charge.intent_id)
    status = ledger_status(charge.status)
    if status == PaymentStatus.SUCCEEDED:
        return True
    if status == PaymentStatus.PENDING:
        ledger.mark(adapters.database_url, payment, PaymentStatus.PENDING, intent_id=charge.intent_id)
        raise PaymentPending(f"the provider holds the payment {charge.status}", intent_id=charge.intent_id)
    ledger.mark(adapters.database_url, payment, PaymentStatus.DECLINED, f"the payment ended {charge.status}")
    return False

"""The payment ledger, the one writer of `payments` and `refunds`: our copy of what the provider holds.

The pre-charge row is committed on its own (one statement, no transaction around it), before the
provider call: the saga's step transaction can roll back (crash, error), that row cannot, so the next
attempt knows a charge may exist and resolves it before calling the provider again. Refunds are
recorded with the status the provider reports, from the saga's own calls and from the provider's
events alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import array, insert

from models.db import run, single_statements, transaction
from models.status import PaymentStatus, RefundOrigin, RefundStatus
from models.tables import PAYMENTS, REFUNDS
from pipeline.errors import PaymentDisputed, PaymentDisputeLost, PaymentRefunded, PermanentError
from pipeline.order_store import LockedOrder
from pipeline.payment_types import Refund

# Dispute statuses after which the money stays with the shop (won) or went back to the customer's bank (lost).
DISPUTE_WON, DISPUTE_LOST = "won", "lost"
# Refunds that hold money: a pending refund has already taken it from the balance and may still fail.
HOLDING = (RefundStatus.SUCCEEDED.value, RefundStatus.PENDING.value, RefundStatus.REQUIRES_ACTION.value)


@dataclass(frozen=True)
class LedgerEntry:
    """An order's payment row as read at one moment."""

    id: uuid.UUID
    status: str
    idempotency_key: str
    intent_id: str | None
    amount_cents: int
    refunded_cents: int
    error: str | None
    dispute_status: str | None
    created_at: datetime


_COLUMNS = [PAYMENTS.c[name] for name in LedgerEntry.__dataclass_fields__]
# Statements are built once (see pipeline.order_store); the UPDATE sets the columns named in its parameters.
_OPEN = insert(PAYMENTS).on_conflict_do_nothing(index_elements=["order_id"]).returning(*_COLUMNS)
_FIND = select(*_COLUMNS).where(PAYMENTS.c.order_id == bindparam("order_id"))
_FIND_LOCKED = _FIND.with_for_update()
_WRITE = update(PAYMENTS).where(PAYMENTS.c.id == bindparam("payment_id"))


def charge_key(order: LockedOrder) -> str:
    return f"{order.id}:charge_payment"


def refund_key(order: LockedOrder, amount_cents: int) -> str:
    """Tied to the amount: a refund from outside changes what is left, and a key must never meet new parameters."""
    return f"{order.id}:refund_payment:{amount_cents}"


def open_charge(database_url: str, order: LockedOrder) -> tuple[LedgerEntry, bool]:
    """The order's payment row, created as `started` if new; returns (row, created_now)."""
    new_row = {
        "order_id": order.id,
        "idempotency_key": charge_key(order),
        "amount_cents": order.total_cents,
        "currency": order.currency,
        "status": PaymentStatus.STARTED.value,
    }
    with single_statements(database_url) as connection:  # committed before the provider is called
        created = run(connection, _OPEN, new_row).fetchone()
        if created is not None:  # the common case: one statement, no read-back
            return LedgerEntry(*created), True
        existing = find(connection, order.id, lock=False)
    if existing is None:
        raise RuntimeError(f"the payment row of order {order.id} conflicted but cannot be read back")
    return existing, False


def find(connection: Connection, order_id: uuid.UUID, *, lock: bool) -> LedgerEntry | None:
    """The order's payment row, if any (row-locked with `lock`)."""
    row = run(connection, _FIND_LOCKED if lock else _FIND, {"order_id": order_id}).fetchone()
    return LedgerEntry(*row) if row else None


def write(connection: Connection, entry: LedgerEntry, **values: object) -> None:
    """Change columns of one payment row inside the caller's transaction."""
    run(connection, _WRITE, {"payment_id": entry.id, **values})


def write_where(connection: Connection, match: Any, *guards: Any, **values: Any) -> uuid.UUID | None:
    """Set `values` on the matched payment if every guard holds (one statement); the order id changed, if any."""
    if match is None:
        return None
    changed = update(PAYMENTS).where(match, *guards).values(**values).returning(PAYMENTS.c.order_id)
    order_id: uuid.UUID | None = connection.scalar(changed)
    return order_id


def charged(connection: Connection, entry: LedgerEntry, intent_id: str) -> None:
    """Record the provider's successful charge inside the caller's transaction."""
    write(connection, entry, status=PaymentStatus.SUCCEEDED.value, intent_id=intent_id)


def mark(
    database_url: str, entry: LedgerEntry, status: PaymentStatus, error: str | None = None, **values: object
) -> None:
    """Record an outcome that must survive the step's rollback (in doubt, pending, declined, succeeded)."""
    with single_statements(database_url) as connection:
        write(connection, entry, status=status.value, error=error[:1000] if error else None, **values)


# A late or repeated event never moves a refund back: pending < succeeded < failed/canceled (a refund can fail
# after it succeeded, never the other way).
_RECORD_REFUND = text("""
    INSERT INTO refunds (payment_id, provider_refund_id, idempotency_key, amount_cents, status, origin, failure_reason)
    VALUES (:payment_id, :refund_id, :idempotency_key, :amount_cents, :status, :origin, :failure_reason)
    ON CONFLICT (provider_refund_id) DO UPDATE SET
        status = excluded.status, updated_at = now(),
        failure_reason = coalesce(excluded.failure_reason, refunds.failure_reason),
        idempotency_key = coalesce(refunds.idempotency_key, excluded.idempotency_key),
        origin = CASE WHEN excluded.origin = 'saga' THEN 'saga' ELSE refunds.origin END
    WHERE (CASE excluded.status WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 WHEN 'canceled' THEN 2 ELSE 0 END)
       >= (CASE refunds.status WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 WHEN 'canceled' THEN 2 ELSE 0 END)""")
_RECOUNT = text("""
    UPDATE payments SET updated_at = now(), refunded_cents = least(amount_cents, (
        SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE payment_id = :payment_id AND status = 'succeeded'))
    WHERE id = :payment_id""")
_HELD_BACK = select(REFUNDS.c.status, REFUNDS.c.amount_cents, REFUNDS.c.origin).where(
    REFUNDS.c.payment_id == bindparam("payment_id")
)


def sync_refunds(database_url: str, payment_id: uuid.UUID, found: list[Refund], key: str | None = None) -> Refunds:
    """Record what the provider reports about these refunds, in its own transaction; returns them all added up."""
    with transaction(database_url) as connection:
        for refund in found:
            record_refund(connection, payment_id, refund, key)
        return refunds(connection, payment_id)


def record_refund(connection: Connection, payment_id: uuid.UUID, refund: Refund, key: str | None = None) -> None:
    """Record a refund as the provider reports it, and keep refunded_cents the sum of the succeeded ones."""
    origin = RefundOrigin.SAGA if refund.ours else RefundOrigin.OUTSIDE
    connection.execute(
        _RECORD_REFUND,
        {
            "payment_id": payment_id,
            "refund_id": refund.refund_id,
            "idempotency_key": key,
            "amount_cents": refund.amount_cents,
            "status": refund.status,
            "origin": origin.value,
            "failure_reason": (refund.failure_reason or "")[:255] or None,
        },
    )
    connection.execute(_RECOUNT, {"payment_id": payment_id})


@dataclass(frozen=True)
class Refunds:
    """An order's refunds added up: what they hold back from the charge, and what is still in flight."""

    held_cents: int
    pending: int
    saga_failed: int


def refund_status(connection: Connection, provider_refund_id: str) -> str | None:
    """The status we have recorded for this provider refund, or None if it is new to us."""
    found = connection.scalar(select(REFUNDS.c.status).where(REFUNDS.c.provider_refund_id == provider_refund_id))
    return str(found) if found is not None else None


def refunds(connection: Connection, payment_id: uuid.UUID) -> Refunds:
    """The payment's recorded refunds added up."""
    rows = connection.execute(_HELD_BACK, {"payment_id": payment_id}).all()
    held = sum(amount for status, amount, _ in rows if status in HOLDING)
    pending = sum(1 for status, _, _ in rows if status in HOLDING and status != RefundStatus.SUCCEEDED)
    failed = sum(1 for status, _, origin in rows if status == RefundStatus.FAILED and origin == RefundOrigin.SAGA)
    return Refunds(held, pending, failed)


_HELD_CENTS = (
    select(func.coalesce(func.sum(REFUNDS.c.amount_cents), 0))
    # = ANY(ARRAY[...]), not IN: an IN list is expanded per execution, which `models.db.run` does not do.
    .where(REFUNDS.c.payment_id == PAYMENTS.c.id, REFUNDS.c.status == any_(array(HOLDING)))
    .scalar_subquery()
)
# One round trip per step: the charge, its dispute and what its refunds hold back.
_MONEY = select(PAYMENTS.c.status, PAYMENTS.c.amount_cents, PAYMENTS.c.dispute_status, _HELD_CENTS).where(
    PAYMENTS.c.order_id == bindparam("order_id")
)


@dataclass(frozen=True)
class Money:
    """The order's charge as the ledger holds it now, with what stops the order from going on, if anything."""

    charged_cents: int | None
    problem: PermanentError | None


def money_still_held(connection: Connection, order: LockedOrder) -> int | None:
    """The amount charged; a charge refunded in full or disputed outside the saga stops the order here."""
    held = money(connection, order)
    if held.problem is not None:
        raise held.problem
    return held.charged_cents


def money(connection: Connection, order: LockedOrder) -> Money:
    """The charge and why the order must not go on with it: refunded in full or disputed (read under the row lock)."""
    row = run(connection, _MONEY, {"order_id": order.id}).fetchone()
    if row is None:
        return Money(None, None)
    status, amount, dispute, held = row
    if status != PaymentStatus.SUCCEEDED:
        return Money(amount, None)
    if dispute == DISPUTE_LOST:
        return Money(amount, PaymentDisputeLost("the charge was disputed and the dispute was lost"))
    if dispute is not None and dispute != DISPUTE_WON:
        return Money(amount, PaymentDisputed(f"the charge is disputed ({dispute}): held for an operator"))
    if held >= amount:
        return Money(amount, PaymentRefunded("the charge was refunded in full outside the saga"))
    return Money(amount, None)

"""The payment ledger: written in its own transaction, before and after each provider call.

The saga's step transaction can roll back (crash, error); the ledger row cannot, so the next
attempt knows a charge may exist and reconciles before calling the provider again.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from models.db import unit_of_work
from models.orders import Order
from models.payments import Payment
from models.status import PaymentStatus


def charge_key(order: Order) -> str:
    return f"{order.id}:charge_payment"


def refund_key(order: Order) -> str:
    return f"{order.id}:refund_payment"


def open_charge(database_url: str, order: Order) -> tuple[Payment, bool]:
    """The order's payment row, created as `started` if new; returns (row, created_now)."""
    with unit_of_work(database_url) as session:
        created = session.scalars(
            insert(Payment)
            .values(
                order_id=order.id,
                idempotency_key=charge_key(order),
                amount_cents=order.total_cents,
                currency=order.currency,
                status=PaymentStatus.STARTED.value,
            )  # fmt: skip
            .on_conflict_do_nothing(index_elements=["order_id"])
            .returning(Payment)
        ).first()
        if created is not None:  # the common case: one statement, no read-back
            return created, True
        return session.scalars(select(Payment).where(Payment.order_id == order.id)).one(), False


def mark(database_url: str, payment: Payment, status: PaymentStatus, error: str | None = None) -> None:
    """Record an outcome that must survive the step's rollback (in doubt, declined)."""
    with unit_of_work(database_url) as session:
        values = {"status": status.value, "error": error[:1000] if error else None}
        session.execute(update(Payment).where(Payment.id == payment.id).values(**values))

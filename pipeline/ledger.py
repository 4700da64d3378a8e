"""The payment ledger: written in its own transaction, before and after each provider call.

The saga's step transaction can roll back (crash, error); the ledger row cannot, so the next
attempt knows a charge may exist and reconciles before calling the provider again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert

from models.db import transaction
from models.status import PaymentStatus
from models.tables import PAYMENTS
from pipeline.progress import LockedOrder


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


_COLUMNS = [PAYMENTS.c[name] for name in LedgerEntry.__dataclass_fields__]
# Statements are built once (see pipeline.progress); the UPDATE sets the columns named in its parameters.
_OPEN = insert(PAYMENTS).on_conflict_do_nothing(index_elements=["order_id"]).returning(*_COLUMNS)
_FIND = select(*_COLUMNS).where(PAYMENTS.c.order_id == bindparam("order_id"))
_FIND_LOCKED = _FIND.with_for_update()
_WRITE = update(PAYMENTS).where(PAYMENTS.c.id == bindparam("payment_id"))


def charge_key(order: LockedOrder) -> str:
    return f"{order.id}:charge_payment"


def refund_key(order: LockedOrder) -> str:
    return f"{order.id}:refund_payment"


def open_charge(database_url: str, order: LockedOrder) -> tuple[LedgerEntry, bool]:
    """The order's payment row, created as `started` if new; returns (row, created_now)."""
    new_row = {
        "order_id": order.id, "idempotency_key": charge_key(order), "amount_cents": order.total_cents,
        "currency": order.currency, "status": PaymentStatus.STARTED.value,
    }  # fmt: skip
    with transaction(database_url) as connection:
        created = connection.execute(_OPEN, new_row).first()
        if created is not None:  # the common case: one statement, no read-back
            return LedgerEntry(*created), True
        existing = find(connection, order.id, lock=False)
    if existing is None:
        raise RuntimeError(f"the payment row of order {order.id} conflicted but cannot be read back")
    return existing, False


def find(connection: Connection, order_id: uuid.UUID, *, lock: bool) -> LedgerEntry | None:
    """The order's payment row, if any (row-locked with `lock`)."""
    row = connection.execute(_FIND_LOCKED if lock else _FIND, {"order_id": order_id}).first()
    return LedgerEntry(*row) if row else None


def write(connection: Connection, entry: LedgerEntry, **values: object) -> None:
    """Change columns of one payment row inside the caller's transaction."""
    connection.execute(_WRITE, {"payment_id": entry.id, **values})


def charged(connection: Connection, entry: LedgerEntry, intent_id: str) -> None:
    """Record the provider's successful charge inside the caller's transaction."""
    write(connection, entry, status=PaymentStatus.SUCCEEDED.value, intent_id=intent_id)


def mark(database_url: str, entry: LedgerEntry, status: PaymentStatus, error: str | None = None) -> None:
    """Record an outcome that must survive the step's rollback (in doubt, declined)."""
    with transaction(database_url) as connection:
        write(connection, entry, status=status.value, error=error[:1000] if error else None)

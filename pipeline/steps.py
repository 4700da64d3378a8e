"""One idempotent function per saga action and compensation.

Each runs inside the step's transaction with the order row locked (see pipeline.order_store), so a
redelivered message finds the effect already there: the runner skips a step whose status has
moved on, and the effects a step writes commit together with that move. Actions raise on
failure; compensations return True when they undid something and False when there was nothing
to undo.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, bindparam, exists, select
from sqlalchemy.dialects.postgresql import insert

from models.db import run, run_scalar
from models.status import NotificationKind, ReservationStatus
from models.tables import NOTIFICATIONS
from pipeline import ledger, stock
from pipeline.adapters import Adapters
from pipeline.errors import PermanentError
from pipeline.notify import Notice
from pipeline.order_store import LockedOrder
from pipeline.payment_steps import charge_payment, refund_payment
from pipeline.shipping_steps import cancel_shipment, ship

# Statements are built once (see pipeline.order_store).
_NOTIFICATION = insert(NOTIFICATIONS).on_conflict_do_nothing()  # a re-run after a crash finds the first one
_CONFIRMATION_SENT = select(
    exists().where(
        NOTIFICATIONS.c.order_id == bindparam("order_id"),
        NOTIFICATIONS.c.kind == NotificationKind.CONFIRMATION.value,
    )
)


def reserve_stock(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Take every line's quantity off the shelf, or none of them (the transaction rolls back)."""
    stock.reserve(connection, order)


def confirm(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Check the totals add up before the order is confirmed: lines, order total and the charge agree."""
    charged = ledger.money_still_held(connection, order)
    lines_total = sum(line.quantity * line.unit_price_cents for line in order.lines)
    if not lines_total == order.total_cents == charged:
        raise PermanentError(f"totals disagree: lines {lines_total}, order {order.total_cents}, charged {charged}")


def notify(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Send the confirmation (the provider dedupes a resend after a crash by its idempotency key)."""
    ledger.money_still_held(connection, order)
    _send_notification(connection, order, adapters, NotificationKind.CONFIRMATION)


def release_stock(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Put every held unit of the order back on the shelf."""
    return stock.settle_held(connection, order, ReservationStatus.RELEASED)


def unconfirm(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Confirmation is state only: leaving `confirmed` (the order is compensating) undoes it."""
    return False


def send_cancellation(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Tell the customer the order is cancelled, if they were told it was confirmed."""
    if not run_scalar(connection, _CONFIRMATION_SENT, {"order_id": order.id}):
        return False
    _send_notification(connection, order, adapters, NotificationKind.CANCELLATION)
    return True


def _send_notification(connection: Connection, order: LockedOrder, adapters: Adapters, kind: NotificationKind) -> None:
    notice = Notice(
        order_id=order.id,
        kind=kind,
        user_id=order.user_id,
        email=order.customer_email,
        total_cents=order.total_cents,
        currency=order.currency,
        lines=len(order.lines),
        reason=order.cancel_reason if kind is NotificationKind.CANCELLATION else None,
        idempotency_key=f"{order.id}:{kind.value}",
    )
    reference = adapters.notifier.send(notice)
    run(connection, _NOTIFICATION, {"order_id": order.id, "kind": kind.value, "provider_ref": reference})


Action = Callable[[Connection, LockedOrder, Adapters], None]
Compensation = Callable[[Connection, LockedOrder, Adapters], bool]
ACTIONS: dict[str, Action] = {step.__name__: step for step in (reserve_stock, charge_payment, confirm, notify, ship)}
COMPENSATIONS: dict[str, Compensation] = {
    undo.__name__: undo for undo in (release_stock, refund_payment, unconfirm, send_cancellation, cancel_shipment)
}

"""One idempotent function per saga action and compensation.

Each runs inside the step's transaction with the order row locked (see pipeline.progress), so a
redelivered message finds the effect already there: the runner skips a step whose status has
moved on, and the effects a step writes commit together with that move. Actions raise on
failure; compensations return True when they undid something and False when there was nothing
to undo.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert

from models.status import NotificationKind, PaymentStatus, ReservationStatus
from models.tables import NOTIFICATIONS, PAYMENTS, PRODUCTS, RESERVATIONS, SHIPMENTS
from pipeline import ledger
from pipeline.adapters import Adapters
from pipeline.errors import OutOfStock, PaymentDeclined, PaymentInDoubt, PermanentError
from pipeline.progress import LockedOrder

# Statements are built once (see pipeline.progress).
_TAKE = (
    update(PRODUCTS)
    .where(PRODUCTS.c.id == bindparam("product_id"), PRODUCTS.c.available >= bindparam("quantity"))
    .values(
        available=PRODUCTS.c.available - bindparam("quantity"), reserved=PRODUCTS.c.reserved + bindparam("quantity")
    )
)
_HOLD = insert(RESERVATIONS)
_CHARGED = select(PAYMENTS.c.amount_cents).where(PAYMENTS.c.order_id == bindparam("order_id"))
_SHIPMENT = insert(SHIPMENTS).on_conflict_do_nothing()
_NOTIFICATION = insert(NOTIFICATIONS).on_conflict_do_nothing()  # a re-run after a crash finds the first one
_CONFIRMATION_SENT = select(
    exists().where(
        NOTIFICATIONS.c.order_id == bindparam("order_id"),
        NOTIFICATIONS.c.kind == NotificationKind.CONFIRMATION.value,
    )
)
_SETTLE = (
    update(RESERVATIONS)
    .where(RESERVATIONS.c.order_id == bindparam("for_order"), RESERVATIONS.c.status == ReservationStatus.HELD.value)
    .values(status=bindparam("outcome"))
    .returning(RESERVATIONS.c.product_id, RESERVATIONS.c.quantity)
)
_UNHOLD = {
    outcome: update(PRODUCTS)
    .where(PRODUCTS.c.id == bindparam("product_id"))
    .values({PRODUCTS.c.reserved: PRODUCTS.c.reserved - bindparam("units"), target: target + bindparam("units")})
    for outcome, target in (
        (ReservationStatus.SHIPPED, PRODUCTS.c.shipped),
        (ReservationStatus.RELEASED, PRODUCTS.c.available),
    )
}


def reserve_stock(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Take every line's quantity off the shelf, or none of them (the transaction rolls back)."""
    # Lock products in one global order so two multi-line orders cannot deadlock.
    for line in sorted(order.lines, key=lambda line: line.product_id):
        taken = connection.execute(_TAKE, {"product_id": line.product_id, "quantity": line.quantity})
        if taken.rowcount == 0:
            raise OutOfStock(f"not enough stock for product {line.product_id}", product_id=str(line.product_id))
    held = [{"order_id": order.id, "product_id": line.product_id, "quantity": line.quantity} for line in order.lines]
    if held:
        connection.execute(_HOLD, held)


def charge_payment(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Charge the order total once: ledger first, reconcile an earlier attempt, then call the provider."""
    payment, created = ledger.open_charge(adapters.database_url, order)
    if payment.status == PaymentStatus.SUCCEEDED:  # recorded by an earlier attempt, or by a webhook
        return
    if payment.status == PaymentStatus.DECLINED:
        raise PaymentDeclined(payment.error or "declined earlier")
    if not created:
        # An earlier attempt may have charged and lost the answer: look before charging again.
        found = adapters.payments.find_charge(order_id=str(order.id), intent_id=payment.intent_id)
        if found and found.status == "succeeded":
            ledger.charged(connection, payment, found.intent_id)
            return
    try:
        charge = adapters.payments.charge(
            order_id=str(order.id), amount_cents=order.total_cents, currency=order.currency.lower(),
            payment_method=order.payment_method_id, idempotency_key=payment.idempotency_key,
        )  # fmt: skip
    except PaymentInDoubt as error:
        ledger.mark(adapters.database_url, payment, PaymentStatus.IN_DOUBT, error.message)
        raise
    except PaymentDeclined as error:
        ledger.mark(adapters.database_url, payment, PaymentStatus.DECLINED, error.message)
        raise
    if charge.status != "succeeded":
        ledger.mark(adapters.database_url, payment, PaymentStatus.DECLINED, f"intent {charge.status}")
        raise PaymentDeclined(f"the payment ended {charge.status}", intent_id=charge.intent_id)
    ledger.charged(connection, payment, charge.intent_id)


def confirm(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Check the totals add up before the order is confirmed: lines, order total and the charge agree."""
    lines_total = sum(line.quantity * line.unit_price_cents for line in order.lines)
    charged = connection.scalar(_CHARGED, {"order_id": order.id})
    if not lines_total == order.total_cents == charged:
        raise PermanentError(f"totals disagree: lines {lines_total}, order {order.total_cents}, charged {charged}")


def notify(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Send the confirmation (the provider dedupes a resend after a crash by its idempotency key)."""
    _send_notification(connection, order, adapters, NotificationKind.CONFIRMATION)


def ship(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Create the shipment (deduped by the carrier's idempotency key) and move the held stock to shipped."""
    items = [{"productId": str(line.product_id), "quantity": line.quantity} for line in order.lines]
    reference = adapters.shipper.create_shipment(
        order_id=order.id, address=order.shipping_address, items=items, idempotency_key=f"{order.id}:ship"
    )
    connection.execute(_SHIPMENT, {"order_id": order.id, "carrier": "local", "tracking_number": reference})
    _settle_held(connection, order, ReservationStatus.SHIPPED)


def release_stock(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Put every held unit of the order back on the shelf."""
    return _settle_held(connection, order, ReservationStatus.RELEASED)


def refund_payment(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Refund what was charged, once; an unresolved charge is reconciled with the provider first."""
    payment = ledger.find(connection, order.id, lock=True)
    if payment is None or payment.status == PaymentStatus.DECLINED:
        return False
    intent_id = payment.intent_id
    if payment.status in (PaymentStatus.STARTED, PaymentStatus.IN_DOUBT):
        found = adapters.payments.find_charge(order_id=str(order.id), intent_id=payment.intent_id)
        if found is None or found.status != "succeeded":
            error = "no successful charge at the provider"
            ledger.write(connection, payment, status=PaymentStatus.DECLINED.value, error=error)
            return False
        intent_id = found.intent_id
        ledger.charged(connection, payment, intent_id)
    if payment.refunded_cents >= payment.amount_cents:
        return False
    assert intent_id is not None  # a succeeded payment always has one (CHECK constraint)
    key = ledger.refund_key(order)
    refund = adapters.payments.refund(
        intent_id=intent_id, amount_cents=payment.amount_cents - payment.refunded_cents, idempotency_key=key
    )
    refunded = {"refund_idempotency_key": key, "refund_id": refund.refund_id, "refunded_cents": payment.amount_cents}
    ledger.write(connection, payment, **refunded)
    return True


def unconfirm(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Confirmation is state only: leaving `confirmed` (the order is compensating) undoes it."""
    return False


def send_cancellation(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Tell the customer the order is cancelled, if they were told it was confirmed."""
    if not connection.scalar(_CONFIRMATION_SENT, {"order_id": order.id}):
        return False
    _send_notification(connection, order, adapters, NotificationKind.CANCELLATION)
    return True


def _send_notification(connection: Connection, order: LockedOrder, adapters: Adapters, kind: NotificationKind) -> None:
    reference = adapters.notifier.send(
        order_id=order.id, kind=kind.value, user_id=order.user_id, idempotency_key=f"{order.id}:{kind.value}"
    )
    connection.execute(_NOTIFICATION, {"order_id": order.id, "kind": kind.value, "provider_ref": reference})


def _settle_held(connection: Connection, order: LockedOrder, outcome: ReservationStatus) -> bool:
    """Move the order's held stock to shipped or back on the shelf; False if nothing was held."""
    settled = connection.execute(_SETTLE, {"for_order": order.id, "outcome": outcome.value}).all()
    # Products in one global order, as reserve_stock locks them, so two orders cannot deadlock.
    for product_id, units in sorted(settled):
        connection.execute(_UNHOLD[outcome], {"product_id": product_id, "units": units})
    return bool(settled)


Action = Callable[[Connection, LockedOrder, Adapters], None]
Compensation = Callable[[Connection, LockedOrder, Adapters], bool]
ACTIONS: dict[str, Action] = {step.__name__: step for step in (reserve_stock, charge_payment, confirm, notify, ship)}
COMPENSATIONS: dict[str, Compensation] = {
    undo.__name__: undo for undo in (release_stock, refund_payment, unconfirm, send_cancellation)
}

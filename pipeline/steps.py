"""One idempotent function per saga action and compensation.

Each runs inside the step's transaction with the order row locked (see pipeline.progress), so a
redelivered message finds the effect already there. Actions raise on failure; compensations
return True when they undid something and False when there was nothing to undo.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.inventory import Product, Reservation
from models.orders import Order
from models.payments import Payment
from models.saga import Notification, Shipment
from models.status import NotificationKind, PaymentStatus, ReservationStatus
from pipeline import ledger
from pipeline.adapters import Adapters
from pipeline.errors import OutOfStock, PaymentDeclined, PaymentInDoubt, PermanentError


def reserve_stock(session: Session, order: Order, adapters: Adapters) -> None:
    """Take every line's quantity off the shelf, or none of them (the transaction rolls back)."""
    # Lock products in one global order so two multi-line orders cannot deadlock.
    for line in sorted(order.lines, key=lambda line: line.product_id):
        taken = session.execute(
            update(Product)
            .where(Product.id == line.product_id, Product.available >= line.quantity)
            .values(available=Product.available - line.quantity, reserved=Product.reserved + line.quantity)
        )
        if taken.rowcount == 0:  # type: ignore[attr-defined]
            raise OutOfStock(f"not enough stock for product {line.product_id}", product_id=str(line.product_id))
        session.add(Reservation(order_id=order.id, product_id=line.product_id, quantity=line.quantity))


def charge_payment(session: Session, order: Order, adapters: Adapters) -> None:
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
            _record_charge(session, payment, found.intent_id)
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
    _record_charge(session, payment, charge.intent_id)


def _record_charge(session: Session, payment: Payment, intent_id: str) -> None:
    succeeded = {"status": PaymentStatus.SUCCEEDED.value, "intent_id": intent_id}
    session.execute(update(Payment).where(Payment.id == payment.id).values(**succeeded))


def confirm(session: Session, order: Order, adapters: Adapters) -> None:
    """Check the totals add up before the order is confirmed: lines, order total and the charge agree."""
    lines_total = sum(line.quantity * line.unit_price_cents for line in order.lines)
    charged = session.scalar(select(Payment.amount_cents).where(Payment.order_id == order.id))
    if not lines_total == order.total_cents == charged:
        raise PermanentError(f"totals disagree: lines {lines_total}, order {order.total_cents}, charged {charged}")


def notify(session: Session, order: Order, adapters: Adapters) -> None:
    """Send the confirmation once."""
    _send_notification(session, order, adapters, NotificationKind.CONFIRMATION)


def ship(session: Session, order: Order, adapters: Adapters) -> None:
    """Create the shipment once and move the held stock to shipped."""
    if session.scalar(select(Shipment.id).where(Shipment.order_id == order.id)) is None:
        items = [{"productId": str(line.product_id), "quantity": line.quantity} for line in order.lines]
        reference = adapters.shipper.create_shipment(
            order_id=order.id, address=order.shipping_address, items=items, idempotency_key=f"{order.id}:ship"
        )
        session.add(Shipment(order_id=order.id, carrier="local", tracking_number=reference))
    for reservation in _held(session, order):
        session.execute(
            update(Product)
            .where(Product.id == reservation.product_id)
            .values(reserved=Product.reserved - reservation.quantity, shipped=Product.shipped + reservation.quantity)
        )
        reservation.status = ReservationStatus.SHIPPED.value


def release_stock(session: Session, order: Order, adapters: Adapters) -> bool:
    """Put every held unit of the order back on the shelf."""
    held = _held(session, order)
    for reservation in held:
        units = reservation.quantity
        back = {"available": Product.available + units, "reserved": Product.reserved - units}
        session.execute(update(Product).where(Product.id == reservation.product_id).values(**back))
        reservation.status = ReservationStatus.RELEASED.value
    return bool(held)


def refund_payment(session: Session, order: Order, adapters: Adapters) -> bool:
    """Refund what was charged, once; an unresolved charge is reconciled with the provider first."""
    payment = session.scalars(select(Payment).where(Payment.order_id == order.id).with_for_update()).one_or_none()
    if payment is None or payment.status == PaymentStatus.DECLINED:
        return False
    if payment.status in (PaymentStatus.STARTED, PaymentStatus.IN_DOUBT):
        found = adapters.payments.find_charge(order_id=str(order.id), intent_id=payment.intent_id)
        if found is None or found.status != "succeeded":
            payment.status, payment.error = PaymentStatus.DECLINED.value, "no successful charge at the provider"
            return False
        payment.status, payment.intent_id = PaymentStatus.SUCCEEDED.value, found.intent_id
    if payment.refunded_cents >= payment.amount_cents:
        return False
    assert payment.intent_id is not None  # a succeeded payment always has one (CHECK constraint)
    payment.refund_idempotency_key = ledger.refund_key(order)
    refund = adapters.payments.refund(
        intent_id=payment.intent_id, amount_cents=payment.amount_cents - payment.refunded_cents,
        idempotency_key=payment.refund_idempotency_key,
    )  # fmt: skip
    payment.refund_id, payment.refunded_cents = refund.refund_id, payment.amount_cents
    return True


def unconfirm(session: Session, order: Order, adapters: Adapters) -> bool:
    """Confirmation is state only: leaving `confirmed` (the order is compensating) undoes it."""
    return False


def send_cancellation(session: Session, order: Order, adapters: Adapters) -> bool:
    """Tell the customer the order is cancelled, if they were told it was confirmed."""
    confirmed = select(Notification.id).where(
        Notification.order_id == order.id, Notification.kind == NotificationKind.CONFIRMATION.value
    )
    if session.scalar(confirmed) is None:
        return False
    return _send_notification(session, order, adapters, NotificationKind.CANCELLATION)


def _send_notification(session: Session, order: Order, adapters: Adapters, kind: NotificationKind) -> bool:
    sent = select(Notification.id).where(Notification.order_id == order.id, Notification.kind == kind.value)
    if session.scalar(sent) is not None:
        return False
    reference = adapters.notifier.send(
        order_id=order.id, kind=kind.value, user_id=order.user_id, idempotency_key=f"{order.id}:{kind.value}"
    )
    session.add(Notification(order_id=order.id, kind=kind.value, provider_ref=reference))
    return True


def _held(session: Session, order: Order) -> list[Reservation]:
    query = select(Reservation).where(
        Reservation.order_id == order.id, Reservation.status == ReservationStatus.HELD.value
    )
    return list(session.scalars(query.order_by(Reservation.product_id).with_for_update()))


Action = Callable[[Session, Order, Adapters], None]
Compensation = Callable[[Session, Order, Adapters], bool]
ACTIONS: dict[str, Action] = {step.__name__: step for step in (reserve_stock, charge_payment, confirm, notify, ship)}
COMPENSATIONS: dict[str, Compensation] = {
    undo.__name__: undo for undo in (release_stock, refund_payment, unconfirm, send_cancellation)
}

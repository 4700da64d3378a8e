"""Held stock leaving the reservation: to shipped with the parcel, or back on the shelf with a cancel."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, update

from models.status import ReservationStatus
from models.tables import PRODUCTS, RESERVATIONS
from pipeline.progress import LockedOrder

# Statements are built once (see pipeline.progress).
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


def settle_held(connection: Connection, order: LockedOrder, outcome: ReservationStatus) -> bool:
    """Move the order's held stock to shipped or back on the shelf; False if nothing was held."""
    settled = connection.execute(_SETTLE, {"for_order": order.id, "outcome": outcome.value}).all()
    # Products in one global order, as reserve_stock locks them, so two orders cannot deadlock.
    for product_id, units in sorted(settled):
        connection.execute(_UNHOLD[outcome], {"product_id": product_id, "units": units})
    return bool(settled)

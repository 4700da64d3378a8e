"""The only writer of products and reservations: stock held for orders, settled, and set by the admin API.

An order's lines are taken off the shelf and held for it (`reserve`); held stock leaves the reservation to
shipped with the parcel, or back on the shelf with a cancel (`settle_held`). The catalogue's admin adds
products and sets the units on the shelf. Each move is one conditional statement (SQLAlchemy Core, built
once), backed by the table's CHECK constraints: available >= 0 and total = available + reserved + shipped.
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Connection, RowMapping, bindparam, cast, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert

from models.db import run
from models.status import ReservationStatus
from models.tables import PRODUCTS, RESERVATIONS
from pipeline.errors import OutOfStock
from pipeline.order_store import LockedOrder

MAX_TOTAL = 2**31 - 1  # products.total is a 32-bit integer

# Statements are built once (see pipeline.order_store). Each move of a line is one statement: the product's
# counters and the reservation change together, in one round trip. Parameters are not named after columns:
# `models.db.run` would read such a name as a column for the UPDATE inside the statement to set.
_TAKEN = (
    update(PRODUCTS)
    .where(
        PRODUCTS.c.id == bindparam("for_product"),
        PRODUCTS.c.available >= bindparam("units", type_=RESERVATIONS.c.quantity.type),
    )
    .values(
        available=PRODUCTS.c.available - bindparam("units", type_=RESERVATIONS.c.quantity.type),
        reserved=PRODUCTS.c.reserved + bindparam("units", type_=RESERVATIONS.c.quantity.type),
    )
    .returning(PRODUCTS.c.id)
    .cte("taken")
)
# The reservation row exists only if the units were taken: no row inserted means not enough stock.
_TAKE_AND_HOLD = insert(RESERVATIONS).from_select(
    ["order_id", "product_id", "quantity"],
    select(
        bindparam("for_order", type_=RESERVATIONS.c.order_id.type),
        _TAKEN.c.id,
        bindparam("units", type_=RESERVATIONS.c.quantity.type),
    ),
)
_SETTLED = (
    update(RESERVATIONS)
    .where(
        RESERVATIONS.c.order_id == bindparam("for_order"),
        RESERVATIONS.c.product_id == bindparam("for_product"),
        RESERVATIONS.c.status == ReservationStatus.HELD.value,
    )
    .values(status=bindparam("outcome"))
    .returning(RESERVATIONS.c.quantity)
    .cte("settled")
)
_UNITS = select(func.sum(_SETTLED.c.quantity)).scalar_subquery()
# Held units of one product leave the reservation for `target` (shipped, or back on the shelf); no row updated
# means nothing was held.
_SETTLE = {
    outcome: update(PRODUCTS)
    .where(PRODUCTS.c.id == bindparam("for_product"), exists(select(_SETTLED.c.quantity)))
    .values({PRODUCTS.c.reserved: PRODUCTS.c.reserved - _UNITS, target: target + _UNITS})
    for outcome, target in (
        (ReservationStatus.SHIPPED, PRODUCTS.c.shipped),
        (ReservationStatus.RELEASED, PRODUCTS.c.available),
    )
}
_CREATE = upsert(PRODUCTS).on_conflict_do_nothing(index_elements=["sku"]).returning(*PRODUCTS.c)
_SET_AVAILABLE = (
    update(PRODUCTS)
    # The new total must fit the column; computed as BIGINT, the check itself cannot overflow.
    .where(
        PRODUCTS.c.id == bindparam("product_id"),
        cast(PRODUCTS.c.total, BigInteger) - PRODUCTS.c.available + bindparam("units") <= MAX_TOTAL,
    )
    .values(
        available=bindparam("units"),
        total=PRODUCTS.c.total - PRODUCTS.c.available + bindparam("units"),
        updated_at=func.now(),
    )
    .returning(*PRODUCTS.c)
)


def reserve(connection: Connection, order: LockedOrder) -> None:
    """Take every line's quantity off the shelf and hold it for the order, or raise OutOfStock."""
    # Lock products in one global order so two multi-line orders cannot deadlock.
    for line in sorted(order.lines, key=lambda line: line.product_id):
        parameters = {"for_order": order.id, "for_product": line.product_id, "units": line.quantity}
        if run(connection, _TAKE_AND_HOLD, parameters).rowcount == 0:  # the caller's transaction rolls back the rest
            raise OutOfStock(f"not enough stock for product {line.product_id}", product_id=str(line.product_id))


def settle_held(connection: Connection, order: LockedOrder, outcome: ReservationStatus) -> bool:
    """Move the order's held stock to shipped or back on the shelf; False if nothing was held."""
    settled = 0
    # Products in one global order, as reserve locks them, so two orders cannot deadlock.
    for product_id in sorted({line.product_id for line in order.lines}):
        parameters = {"for_order": order.id, "for_product": product_id, "outcome": outcome.value}
        settled += run(connection, _SETTLE[outcome], parameters).rowcount
    return settled > 0


def create_product(
    connection: Connection, *, sku: str, name: str, price_cents: int, currency: str, stock: int
) -> RowMapping | None:
    """Add a product with `stock` units on the shelf; None, writing nothing, if the sku is taken."""
    row = connection.execute(
        _CREATE,
        {
            "sku": sku,
            "name": name,
            "price_cents": price_cents,
            "currency": currency,
            "total": stock,
            "available": stock,
            "reserved": 0,
            "shipped": 0,
        },
    ).first()
    return None if row is None else row._mapping


def set_available(connection: Connection, product_id: uuid.UUID, units: int) -> RowMapping | None:
    """Set the units on the shelf, total moving by the same delta; None if no such product or total > MAX_TOTAL."""
    row = connection.execute(_SET_AVAILABLE, {"product_id": product_id, "units": units}).first()
    return None if row is None else row._mapping

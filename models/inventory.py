"""The catalogue and its stock: available + reserved + shipped always equals total."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, UUIDKey
from models.status import ReservationStatus, sql_in


class Product(UUIDKey, Timestamps, Base):
    """A sellable item with its price in minor units and its stock counters."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("shipped >= 0", name="shipped_not_negative"),
        # Stock is conserved: every unit is on the shelf, held for an order, or gone with a shipment.
        CheckConstraint("total = available + reserved + shipped", name="stock_conserved"),
    )

    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    available: Mapped[int] = mapped_column(Integer, server_default="0")
    reserved: Mapped[int] = mapped_column(Integer, server_default="0")
    shipped: Mapped[int] = mapped_column(Integer, server_default="0")


class Reservation(UUIDKey, Timestamps, Base):
    """Stock held for one order line; unique per (order, product) so a redelivery cannot hold twice."""

    __tablename__ = "reservations"
    __table_args__ = (
        # Also the index of the order's reservations (its leading column), and of the cascade from orders.
        UniqueConstraint("order_id", "product_id", name="uq_reservations_order_product"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(f"status {sql_in(ReservationStatus)}", name="status_known"),
        # The audit's check of reserved stock reads the held ones only, by product (migration 0011).
        Index(
            "ix_reservations_held_product",
            "product_id",
            postgresql_include=["quantity"],
            postgresql_where=text("status = 'held'"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default=ReservationStatus.HELD.value)

"""Orders and their lines."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Timestamps, UUIDKey
from models.status import TERMINAL_SQL, OrderStatus, sql_in


class Order(UUIDKey, Timestamps, Base):
    """One checkout: what was bought, by whom, and where its saga stands."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status {sql_in(OrderStatus)}", name="status_known"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        CheckConstraint("deliveries >= 0", name="deliveries_not_negative"),
        CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL", name="cancel_has_reason"),
        # Keyset pages, newest first: a client's list (all, by status, by user), and admin's across clients.
        Index("ix_orders_client_created", "client_id", "created_at", "id"),
        Index("ix_orders_client_status_created", "client_id", "status", "created_at", "id"),
        Index("ix_orders_client_user_created", "client_id", "user_id", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_user_created", "user_id", "created_at", "id"),
        Index("ix_orders_status_created", "status", "created_at", "id"),
        # The reaper scans only live orders whose lease ran out.
        Index(
            "ix_orders_live_lease",
            "lease_expires_at",
            postgresql_where=f"status NOT IN {TERMINAL_SQL}",
        ),
    )

    # The API client (token `sub`) that placed the order: the only client that may read or cancel it.
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), server_default=OrderStatus.PENDING.value)
    currency: Mapped[str] = mapped_column(String(3))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    payment_method_id: Mapped[str] = mapped_column(String(255))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Where the customer's confirmation and cancellation e-mails go; None: the shop gave no address.
    customer_email: Mapped[str | None] = mapped_column(String(320))
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # Crash recovery: the step in flight, until when its worker holds it, and how often it was delivered.
    current_step: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliveries: Mapped[int] = mapped_column(Integer, server_default="0")

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.line_no", lazy="selectin"
    )


class OrderLine(UUIDKey, Base):
    """One product and quantity in an order, priced from the catalogue at intake."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_product"),
        UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line_no"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="price_not_negative"),
        CheckConstraint("line_no >= 1", name="line_no_positive"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="lines")

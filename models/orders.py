"""Orders and their lines."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Timestamps, UUIDKey
from models.status import TERMINAL_SQL, TERMINAL_VALUES, OrderStatus, sql_in

# Percent of a heap page filled by inserts; the rest holds updated versions of its rows. An order's row is about
# 300 bytes and moves five times within a second or two: 80 leaves about five versions' room per page, which
# page pruning frees again once the versions are dead.
FILLFACTOR = 80


class Order(UUIDKey, Timestamps, Base):
    """One checkout: what was bought, by whom, and where its saga stands."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status {sql_in(OrderStatus)}", name="status_known"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        CheckConstraint("deliveries >= 0", name="deliveries_not_negative"),
        CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL", name="cancel_has_reason"),
        # No index names a column a step's move changes (status, current_step, lease_expires_at, deliveries,
        # updated_at), so the moves are HOT updates: no new entry in any index. Live orders are found, and the
        # list filters by status, through terminal_status (see below). Keyset pages, newest first: a client's
        # list (all, by terminal status or live, by user), and admin's across clients.
        Index("ix_orders_client_created", "client_id", "created_at", "id"),
        Index("ix_orders_client_terminal_created", "client_id", "terminal_status", "created_at", "id"),
        Index("ix_orders_client_user_created", "client_id", "user_id", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_user_created", "user_id", "created_at", "id"),
        # The live orders (terminal_status IS NULL: the reaper's, `stuck`'s and the open counts' range) and the
        # parked ones, oldest first.
        Index("ix_orders_terminal_created", "terminal_status", "created_at", "id"),
        # Room on each page for a row's next versions, so a move can stay on its page (HOT needs that too).
        {"postgresql_with": {"fillfactor": FILLFACTOR}},
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
    # The status once the saga has nothing left to do (shipped, cancelled, needs_attention); NULL while it runs.
    # Postgres keeps it from `status`: a move between live statuses leaves it NULL, so it changes no index.
    terminal_status: Mapped[str | None] = mapped_column(
        String(20), Computed(f"CASE WHEN status IN {TERMINAL_SQL} THEN status END", persisted=True)
    )

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


def status_condition(status: str, placeholder: str) -> str:
    """SQL finding the orders (alias `o`) in `status` along an index: terminal_status for a terminal status,
    and for a live one the live range (terminal_status IS NULL, a few rows), then `status` on the rows."""
    if status in TERMINAL_VALUES:
        return f"o.terminal_status = {placeholder}"
    return f"o.terminal_status IS NULL AND o.status = {placeholder}"

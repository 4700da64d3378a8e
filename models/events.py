"""Order events: the transactional outbox a shop hears from, by webhook or from the feed.

Every status change of an order writes one row in the transaction that changes it, so a crash can delay
an event but never lose one or invent one. `transaction_id` is the writing transaction's id (xid8): a
reader that stops below the oldest transaction still running (`pg_snapshot_xmin`) never skips an event
that commits later, so the feed's cursor is safe without a relay process.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from models.base import Base, UUIDKey


class Xid8(UserDefinedType[int]):
    """Postgres's 64-bit transaction id (read and compared in SQL; Python sees an int)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


# Teach the Postgres dialect's reflection the type, so Alembic's comparison of models and migrations knows it.
postgresql_base.ischema_names["xid8"] = Xid8


class OrderEvent(UUIDKey, Base):
    """One thing that happened to an order, as the shop sees it: type, per-order sequence, the order then."""

    __tablename__ = "order_events"
    __table_args__ = (
        UniqueConstraint("order_id", "sequence"),
        CheckConstraint("sequence >= 1", name="sequence_positive"),
        CheckConstraint("type LIKE 'order.%'", name="type_known"),
        # The feed: a client's events in commit-safe order.
        Index("ix_order_events_client_position", "client_id", "transaction_id", "id"),
        Index("ix_order_events_position", "transaction_id", "id"),
        Index("ix_order_events_created", "created_at"),  # retention takes the oldest first
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    transaction_id: Mapped[int] = mapped_column(Xid8(), server_default=text("pg_current_xact_id()"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

"""Shops' webhook endpoints, one delivery per (endpoint, order event), every attempt, and the fan-out's position.

Written only by `pipeline.webhook_store`. A delivery copies its event's order and sequence so an endpoint hears
an order's events one at a time, in sequence order (the next waits while an earlier one is pending).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, UUIDKey

DELIVERY_STATUSES = ("pending", "delivered", "failed", "skipped")


class WebhookEndpoint(UUIDKey, Timestamps, Base):
    """A URL a client registered to receive its orders' events (an empty event_types list means all of them)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint("enabled OR disabled_reason IS NOT NULL", name="disabled_has_reason"),
        # Keyset pages, newest first: a client's endpoints, and admin's across clients.
        Index("ix_webhook_endpoints_client_created", "client_id", "created_at", "id"),
        Index("ix_webhook_endpoints_created", "created_at", "id"),
    )

    client_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default=text("'{}'"))
    # Standard Webhooks format: whsec_ + base64 of the key.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # Since when every attempt has failed (cleared by a delivered one); past WEBHOOK_DISABLE_AFTER_S it is disabled.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(UUIDKey, Timestamps, Base):
    """One event owed to one endpoint: pending until a 2xx (delivered), given up (failed), or skipped."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        CheckConstraint(f"status IN {DELIVERY_STATUSES}", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # Head of line: an endpoint's earlier pending delivery of the same order.
        Index("ix_webhook_deliveries_endpoint_order_sequence", "endpoint_id", "order_id", "sequence"),
        Index("ix_webhook_deliveries_event", "event_id"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        # The periodic pass: pending deliveries whose time has come.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order_events.id", ondelete="CASCADE"))
    order_id: Mapped[uuid.UUID]
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A worker is sending it until then: another copy of its message leaves it alone.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Retries stop here (WEBHOOK_RETRY_FOR_S after it was created or redelivered): then it is failed.
    give_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_response_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(UUIDKey, Base):
    """One POST of a delivery: when, how long, what came back (a response code, or why there was none)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_delivery_attempt"),)

    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_code: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(String(500))


class WebhookFanout(Base):
    """The fan-out's position in the event stream: the last (transaction_id, event id) turned into deliveries."""

    __tablename__ = "webhook_fanout"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

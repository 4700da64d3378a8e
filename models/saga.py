"""The saga's records: the order timeline, intake idempotency, and the effects that must happen once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Identity, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UUIDKey
from models.status import NotificationKind, StepKind, StepOutcome, sql_in


class SagaStep(UUIDKey, Base):
    """One attempt of one step (or compensation, or operator action): the order's timeline."""

    __tablename__ = "saga_steps"
    __table_args__ = (
        CheckConstraint(f"kind {sql_in(StepKind)}", name="kind_known"),
        CheckConstraint(f"outcome {sql_in(StepOutcome)}", name="outcome_known"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("finished_at IS NULL OR finished_at >= started_at", name="finished_after_start"),
        CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration_not_negative"),
        Index("ix_saga_steps_order_started", "order_id", "started_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class LocalDelivery(Base):
    """What the local notifier and shipper "sent": their own record, deduplicated by idempotency key.

    Written in its own transaction, like a real provider's system would be, so a step that rolls
    back after the call still leaves the delivery behind (that is what makes the key matter).
    """

    __tablename__ = "local_deliveries"
    __table_args__ = (
        CheckConstraint("provider IN ('notifier', 'shipper')", name="provider_known"),
        Index("ix_local_deliveries_created", "created_at"),  # retention takes the oldest first
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """An intake request seen before: replayed with its original response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("response_code BETWEEN 200 AND 599", name="response_code_http"),
        Index("ix_idempotency_keys_created", "created_at"),  # retention takes the oldest first
        # Deleting an order cascades here: without it, each deleted order reads the whole table.
        Index("ix_idempotency_keys_order", "order_id"),
    )

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    response_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookEvent(Base):
    """A provider event already applied; its id makes redelivered webhooks no-ops."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_received", "received_at"),)  # retention takes the oldest first

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Notification(UUIDKey, Base):
    """A message sent to the customer; at most one of each kind per order."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"kind {sql_in(NotificationKind)}", name="kind_known"),
        Index("uq_notifications_order_kind", "order_id", "kind", unique=True),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Shipment(UUIDKey, Base):
    """The carrier's shipment of an order; at most one per order."""

    __tablename__ = "shipments"

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    carrier: Mapped[str] = mapped_column(String(40))
    tracking_number: Mapped[str] = mapped_column(String(100))
    # The carrier's own id of the shipment (its records are the truth; see pipeline.carrier).
    carrier_shipment_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

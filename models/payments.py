"""Payments: the idempotency ledger of every charge and refund we asked the provider for."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, UUIDKey
from models.status import PaymentStatus, RefundOrigin, RefundStatus, sql_in


class Payment(UUIDKey, Timestamps, Base):
    """The charge of one order; its idempotency key is stored before the provider is called."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status {sql_in(PaymentStatus)}", name="status_known"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint("refunded_cents >= 0 AND refunded_cents <= amount_cents", name="refund_within_charge"),
        CheckConstraint("status <> 'succeeded' OR intent_id IS NOT NULL", name="success_has_intent"),
        CheckConstraint("refunded_cents = 0 OR status = 'succeeded'", name="refund_only_of_success"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        # The reaper's kept-money net reads the payments changed lately (a charge settled after its cancel).
        Index("ix_payments_updated", "updated_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    provider: Mapped[str] = mapped_column(String(20), server_default="stripe")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), server_default=PaymentStatus.STARTED.value)
    # The sum of the refunds the provider reports `succeeded` (kept by pipeline.refund_ledger, never set directly).
    refunded_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    error: Mapped[str | None] = mapped_column(String(1000))
    # The latest dispute on the charge, as the provider reported it (needs_response, under_review, won, lost, ...).
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    dispute_status: Mapped[str | None] = mapped_column(String(32))


class Refund(UUIDKey, Timestamps, Base):
    """One refund of an order's charge at the provider, with the status the provider last reported."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(f"status {sql_in(RefundStatus)}", name="status_known"),
        CheckConstraint(f"origin {sql_in(RefundOrigin)}", name="origin_known"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        Index("ix_refunds_updated", "updated_at"),  # ... and the refunds changed lately (one that failed)
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    provider_refund_id: Mapped[str] = mapped_column(String(255), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(8))
    failure_reason: Mapped[str | None] = mapped_column(String(255))

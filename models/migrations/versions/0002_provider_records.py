"""The providers' records in our ledger: one row per refund with its status, disputes, pending intents, carrier ids.

Existing saga refunds (one per payment, on the payment row) move to the refunds table as succeeded refunds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('started', 'in_doubt', 'succeeded', 'declined')"
NEW_STATUSES = "status IN ('started', 'in_doubt', 'pending', 'succeeded', 'declined')"


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=8), nullable=False),
        sa.Column("failure_reason", sa.String(length=255), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("origin IN ('saga', 'outside')", name=op.f("ck_refunds_origin_known")),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name=op.f("ck_refunds_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("provider_refund_id", name=op.f("uq_refunds_provider_refund_id")),
    )
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"], unique=False)
    op.execute(
        "INSERT INTO refunds (payment_id, provider_refund_id, idempotency_key, amount_cents, status, origin)"
        " SELECT id, refund_id, refund_idempotency_key, refunded_cents, 'succeeded', 'saga' FROM payments"
        " WHERE refund_id IS NOT NULL AND refunded_cents > 0"
    )
    op.drop_constraint(op.f("uq_payments_refund_idempotency_key"), "payments", type_="unique")
    op.drop_column("payments", "refund_idempotency_key")
    op.drop_column("payments", "refund_id")
    op.add_column("payments", sa.Column("dispute_id", sa.String(length=255), nullable=True))
    op.add_column("payments", sa.Column("dispute_status", sa.String(length=32), nullable=True))
    op.drop_constraint(op.f("ck_payments_status_known"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_status_known"), "payments", NEW_STATUSES)
    op.add_column("shipments", sa.Column("carrier_shipment_id", sa.String(length=255), nullable=True))
    op.create_unique_constraint(op.f("uq_shipments_carrier_shipment_id"), "shipments", ["carrier_shipment_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_shipments_carrier_shipment_id"), "shipments", type_="unique")
    op.drop_column("shipments", "carrier_shipment_id")
    op.execute("UPDATE payments SET status = 'in_doubt' WHERE status = 'pending'")
    op.drop_constraint(op.f("ck_payments_status_known"), "payments", type_="check")
    op.create_check_constraint(op.f("ck_payments_status_known"), "payments", OLD_STATUSES)
    op.drop_column("payments", "dispute_status")
    op.drop_column("payments", "dispute_id")
    op.add_column("payments", sa.Column("refund_id", sa.String(length=255), nullable=True))
    op.add_column("payments", sa.Column("refund_idempotency_key", sa.String(length=255), nullable=True))
    op.create_unique_constraint(op.f("uq_payments_refund_idempotency_key"), "payments", ["refund_idempotency_key"])
    # The newest saga refund of each payment goes back on the payment row (refunded_cents already holds the sum).
    op.execute(
        "UPDATE payments p SET refund_id = r.provider_refund_id, refund_idempotency_key = r.idempotency_key"
        " FROM (SELECT DISTINCT ON (payment_id) payment_id, provider_refund_id, idempotency_key FROM refunds"
        "       WHERE origin = 'saga' AND status = 'succeeded' ORDER BY payment_id, created_at DESC) r"
        " WHERE r.payment_id = p.id"
    )
    op.drop_index(op.f("ix_refunds_payment_id"), table_name="refunds")
    op.drop_table("refunds")

"""Order events: the outbox every status change of an order writes in its own transaction.

Revision ID: 0005
Revises: 0004_customer_email
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_customer_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_events",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.dialects.postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint("sequence >= 1", name=op.f("ck_order_events_sequence_positive")),
        sa.CheckConstraint("type LIKE 'order.%'", name=op.f("ck_order_events_type_known")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_events_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint("order_id", "sequence", name=op.f("uq_order_events_order_id")),
    )
    # The writing transaction's id (xid8, which SQLAlchemy has no type for): readers stop below the oldest one running.
    op.execute("ALTER TABLE order_events ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.create_index("ix_order_events_client_position", "order_events", ["client_id", "transaction_id", "id"])
    op.create_index("ix_order_events_position", "order_events", ["transaction_id", "id"])


def downgrade() -> None:
    op.drop_table("order_events")

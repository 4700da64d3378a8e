"""Indexes on the age of the rows retention prunes: idempotency keys, Stripe event ids, order events, local records.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_idempotency_keys_created", "idempotency_keys", "created_at"),
    ("ix_webhook_events_received", "webhook_events", "received_at"),
    ("ix_order_events_created", "order_events", "created_at"),
    ("ix_local_deliveries_created", "local_deliveries", "created_at"),
]


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)

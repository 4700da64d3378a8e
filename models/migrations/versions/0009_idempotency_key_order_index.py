"""An index on idempotency_keys.order_id, the one cascading foreign key without one.

Deleting an order cascades to its key row; without the index every deleted order read the whole table
(the growth bench's cleanup of 5,200 orders beside a million keys ran for minutes).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_idempotency_keys_order", "idempotency_keys", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_order", table_name="idempotency_keys")

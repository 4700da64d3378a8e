"""Indexes on when payments and refunds last changed: the reaper's kept-money net reads only the recent ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = [("ix_payments_updated", "payments", "updated_at"), ("ix_refunds_updated", "refunds", "updated_at")]


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)

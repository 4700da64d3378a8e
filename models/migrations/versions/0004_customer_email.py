"""The customer's e-mail address on an order, for the confirmation and cancellation e-mails (nullable: optional).

Revision ID: 0004_customer_email
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_customer_email"
down_revision = "0003"  # the revision id of 0003_order_owner.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable with no default: a catalogue-only change, no table rewrite, existing orders have no address.
    op.add_column("orders", sa.Column("customer_email", sa.String(length=320), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "customer_email")

"""Every order belongs to the API client that placed it, and lists are read by keyset from matching indexes.

The owner of an existing order is the client of its Idempotency-Key row (intake writes both in one
transaction). An order with no key row (written by hand or by an old bulk load) gets LEGACY_OWNER, which no
token names, so only `admin` sees it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LEGACY_OWNER = "legacy:unowned"
# (name, columns): newest-first pages per client (all, by status, by user) and admin's across clients.
KEYSET_INDEXES = [
    ("ix_orders_client_created", ["client_id", "created_at", "id"]),
    ("ix_orders_client_status_created", ["client_id", "status", "created_at", "id"]),
    ("ix_orders_client_user_created", ["client_id", "user_id", "created_at", "id"]),
    ("ix_orders_created", ["created_at", "id"]),
    ("ix_orders_user_created", ["user_id", "created_at", "id"]),
    ("ix_orders_status_created", ["status", "created_at", "id"]),
]
OLD_INDEXES = [
    ("ix_orders_user_created", ["user_id", "created_at"]),
    ("ix_orders_status_created", ["status", "created_at"]),
]


def upgrade() -> None:
    op.add_column("orders", sa.Column("client_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE orders SET client_id = keys.client_id FROM idempotency_keys AS keys WHERE keys.order_id = orders.id"
    )
    op.execute(sa.text("UPDATE orders SET client_id = :owner WHERE client_id IS NULL").bindparams(owner=LEGACY_OWNER))
    op.alter_column("orders", "client_id", nullable=False)
    for name, _ in OLD_INDEXES:
        op.drop_index(name, table_name="orders")
    for name, columns in KEYSET_INDEXES:
        op.create_index(name, "orders", columns, unique=False)


def downgrade() -> None:
    for name, _ in KEYSET_INDEXES:
        op.drop_index(name, table_name="orders")
    for name, columns in OLD_INDEXES:
        op.create_index(name, "orders", columns, unique=False)
    op.drop_column("orders", "client_id")

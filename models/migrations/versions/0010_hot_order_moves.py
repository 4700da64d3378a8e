"""Orders' moves become HOT updates: no index names a column a step changes.

`status` was in two list indexes and the predicate of the reaper's lease index, and `lease_expires_at` was that
index's key, so each of an order's five moves wrote a new entry into all eight of the table's indexes. Now a
generated column, terminal_status (NULL while the saga runs), serves both: live orders are its NULL range, and
the list's status filter reads it. Adding a stored generated column rewrites the table under an exclusive lock:
on a large database run this in a maintenance window.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As it stood at this revision (a migration does not follow later edits of models.status).
TERMINAL_SQL = "('shipped', 'cancelled', 'needs_attention')"

NEW = [
    ("ix_orders_client_terminal_created", ["client_id", "terminal_status", "created_at", "id"]),
    ("ix_orders_terminal_created", ["terminal_status", "created_at", "id"]),
]
OLD = [
    ("ix_orders_client_status_created", ["client_id", "status", "created_at", "id"]),
    ("ix_orders_status_created", ["status", "created_at", "id"]),
]


def upgrade() -> None:
    terminal = sa.Computed(f"CASE WHEN status IN {TERMINAL_SQL} THEN status END", persisted=True)
    op.add_column("orders", sa.Column("terminal_status", sa.String(20), terminal, nullable=True))
    for name, columns in NEW:
        op.create_index(name, "orders", columns)
    for name, _ in OLD:
        op.drop_index(name, table_name="orders")
    op.drop_index("ix_orders_live_lease", table_name="orders")
    op.execute("ALTER TABLE orders SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE orders RESET (fillfactor)")
    op.create_index(
        "ix_orders_live_lease",
        "orders",
        ["lease_expires_at"],
        postgresql_where=sa.text(f"status NOT IN {TERMINAL_SQL}"),
    )
    for name, columns in OLD:
        op.create_index(name, "orders", columns)
    for name, _ in NEW:
        op.drop_index(name, table_name="orders")
    op.drop_column("orders", "terminal_status")

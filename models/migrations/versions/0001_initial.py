"""Initial schema for the whole checkout saga: orders, stock, payments, timeline, idempotency.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("payment_method_id", sa.String(length=255), nullable=False),
        sa.Column("shipping_address", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("cancel_reason", sa.String(length=40), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("current_step", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_orders_currency_iso")),
        sa.CheckConstraint(
            "status <> 'cancelled' OR cancel_reason IS NOT NULL", name=op.f("ck_orders_cancel_has_reason")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'reserved', 'paid', 'confirmed', 'notified', 'shipped', 'compensating', 'cancelled', 'needs_attention')",
            name=op.f("ck_orders_status_known"),
        ),
        sa.CheckConstraint("deliveries >= 0", name=op.f("ck_orders_deliveries_not_negative")),
        sa.CheckConstraint("total_cents >= 0", name=op.f("ck_orders_total_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(
        "ix_orders_live_lease",
        "orders",
        ["lease_expires_at"],
        unique=False,
        postgresql_where="status NOT IN ('shipped', 'cancelled', 'needs_attention')",
    )
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at"], unique=False)
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at"], unique=False)
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("available", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reserved", sa.Integer(), server_default="0", nullable=False),
        sa.Column("shipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_products_currency_iso")),
        sa.CheckConstraint("available >= 0", name=op.f("ck_products_available_not_negative")),
        sa.CheckConstraint("price_cents >= 0", name=op.f("ck_products_price_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_products_reserved_not_negative")),
        sa.CheckConstraint("shipped >= 0", name=op.f("ck_products_shipped_not_negative")),
        sa.CheckConstraint("total = available + reserved + shipped", name=op.f("ck_products_stock_conserved")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("response_code BETWEEN 200 AND 599", name=op.f("ck_idempotency_keys_response_code_http")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_idempotency_keys_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("client_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "notifications",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint("kind IN ('confirmation', 'cancellation')", name=op.f("ck_notifications_kind_known")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_notifications_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index("uq_notifications_order_kind", "notifications", ["order_id", "kind"], unique=True)
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint("line_no >= 1", name=op.f("ck_order_lines_line_no_positive")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_lines_quantity_positive")),
        sa.CheckConstraint("unit_price_cents >= 0", name=op.f("ck_order_lines_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_order_lines_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
        sa.UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line_no"),
        sa.UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_product"),
    )
    op.create_table(
        "local_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("provider IN ('notifier', 'shipper')", name=op.f("ck_local_deliveries_provider_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_local_deliveries_idempotency_key")),
    )
    op.create_index(op.f("ix_local_deliveries_order_id"), "local_deliveries", ["order_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), server_default="stripe", nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("intent_id", sa.String(length=255), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="started", nullable=False),
        sa.Column("refunded_cents", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refund_idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("refund_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_payments_currency_iso")),
        sa.CheckConstraint(
            "refunded_cents = 0 OR status = 'succeeded'", name=op.f("ck_payments_refund_only_of_success")
        ),
        sa.CheckConstraint(
            "status <> 'succeeded' OR intent_id IS NOT NULL", name=op.f("ck_payments_success_has_intent")
        ),
        sa.CheckConstraint(
            "status IN ('started', 'in_doubt', 'succeeded', 'declined')", name=op.f("ck_payments_status_known")
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "refunded_cents >= 0 AND refunded_cents <= amount_cents", name=op.f("ck_payments_refund_within_charge")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payments_idempotency_key")),
        sa.UniqueConstraint("intent_id", name=op.f("uq_payments_intent_id")),
        sa.UniqueConstraint("order_id", name=op.f("uq_payments_order_id")),
        sa.UniqueConstraint("refund_idempotency_key", name=op.f("uq_payments_refund_idempotency_key")),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="held", nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('held', 'released', 'shipped')", name=op.f("ck_reservations_status_known")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservations_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_reservations_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_reservations_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sa.UniqueConstraint("order_id", "product_id", name="uq_reservations_order_product"),
    )
    op.create_index(op.f("ix_reservations_order_id"), "reservations", ["order_id"], unique=False)
    op.create_table(
        "saga_steps",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint("kind IN ('action', 'compensation', 'operator')", name=op.f("ck_saga_steps_kind_known")),
        sa.CheckConstraint(
            "outcome IN ('started', 'succeeded', 'retrying', 'failed', 'skipped')",
            name=op.f("ck_saga_steps_outcome_known"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_saga_steps_attempt_positive")),
        sa.CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name=op.f("ck_saga_steps_duration_not_negative")),
        sa.CheckConstraint(
            "finished_at IS NULL OR finished_at >= started_at", name=op.f("ck_saga_steps_finished_after_start")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_saga_steps_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saga_steps")),
    )
    op.create_index("ix_saga_steps_order_started", "saga_steps", ["order_id", "started_at"], unique=False)
    op.create_table(
        "shipments",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("carrier", sa.String(length=40), nullable=False),
        sa.Column("tracking_number", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_shipments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("order_id", name=op.f("uq_shipments_order_id")),
    )


def downgrade() -> None:
    op.drop_table("shipments")
    op.drop_index("ix_saga_steps_order_started", table_name="saga_steps")
    op.drop_table("saga_steps")
    op.drop_index(op.f("ix_reservations_order_id"), table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("payments")
    op.drop_index(op.f("ix_local_deliveries_order_id"), table_name="local_deliveries")
    op.drop_table("local_deliveries")
    op.drop_table("order_lines")
    op.drop_index("uq_notifications_order_kind", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("idempotency_keys")
    op.drop_table("webhook_events")
    op.drop_table("products")
    op.drop_index("ix_orders_user_created", table_name="orders")
    op.drop_index("ix_orders_status_created", table_name="orders")
    op.drop_index(
        "ix_orders_live_lease",
        table_name="orders",
        postgresql_where="status NOT IN ('shipped', 'cancelled', 'needs_attention')",
    )
    op.drop_table("orders")

"""The reads intake sends (psycopg placeholders); its one write is `pipeline.order_store.place_order`."""

from __future__ import annotations

PRICES = "SELECT id, price_cents, currency, now() FROM products WHERE id = ANY(%(ids)s)"
KEY_ROW = (
    "SELECT request_hash, order_id, response_body FROM idempotency_keys "
    "WHERE client_id = %(client_id)s AND key = %(key)s"
)

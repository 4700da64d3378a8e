"""The statements intake sends (psycopg placeholders), kept apart from the logic that sequences them."""

from __future__ import annotations

PRICES = "SELECT id, price_cents, currency, now() FROM products WHERE id = ANY(%(ids)s)"
KEY_ROW = (
    "SELECT request_hash, order_id, response_body FROM idempotency_keys "
    "WHERE client_id = %(client_id)s AND key = %(key)s"
)
# The key row first: the order and its lines are inserted only if the key row was (see api/intake.py).
# The order's timestamps are the transaction's clock, read by the price lookup (now() is constant in a
# transaction, so this is the value the columns' now() defaults would give).
INSERT_ORDER = """
WITH new_key AS (
    INSERT INTO idempotency_keys (client_id, key, request_hash, order_id, response_code, response_body)
    VALUES (%(client_id)s, %(key)s, %(request_hash)s, %(order_id)s, 201, %(response_body)s)
    ON CONFLICT (client_id, key) DO NOTHING
    RETURNING order_id
), new_order AS (
    INSERT INTO orders (id, client_id, user_id, status, currency, total_cents, payment_method_id, shipping_address,
                        current_step, lease_expires_at, created_at, updated_at)
    SELECT order_id, %(client_id)s, %(user_id)s, %(status)s, %(currency)s, %(total_cents)s, %(payment_method_id)s,
           %(shipping_address)s, %(current_step)s, %(lease_expires_at)s, %(created_at)s, %(created_at)s
    FROM new_key
    RETURNING id
), new_lines AS (
    INSERT INTO order_lines (order_id, product_id, line_no, quantity, unit_price_cents)
    SELECT new_order.id, line.product_id, line.line_no, line.quantity, line.unit_price_cents
    FROM new_order, unnest(%(product_ids)s::uuid[], %(quantities)s::integer[], %(prices)s::bigint[])
        WITH ORDINALITY AS line (product_id, quantity, unit_price_cents, line_no)
)
SELECT count(*) FROM new_order
"""

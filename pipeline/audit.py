"""The ledger checks behind the invariants: run on any database, optionally against the provider's records."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import text

from models.db import engine_for

CHECKS = {
    "order not terminal": "SELECT id FROM orders WHERE status NOT IN ('shipped', 'cancelled', 'needs_attention')",
    "stock not conserved or negative": (
        "SELECT id FROM products WHERE total <> available + reserved + shipped OR available < 0 OR reserved < 0"
    ),
    "reserved stock disagrees with held reservations": """
        SELECT p.id FROM products p LEFT JOIN reservations r ON r.product_id = p.id AND r.status = 'held'
        GROUP BY p.id, p.reserved HAVING p.reserved <> COALESCE(SUM(r.quantity), 0)""",
    "shipped stock disagrees with shipped reservations": """
        SELECT p.id FROM products p LEFT JOIN reservations r ON r.product_id = p.id AND r.status = 'shipped'
        GROUP BY p.id, p.shipped HAVING p.shipped <> COALESCE(SUM(r.quantity), 0)""",
    "shipped order not paid in full": """
        SELECT o.id FROM orders o LEFT JOIN payments p ON p.order_id = o.id
        WHERE o.status = 'shipped' AND (p.status IS DISTINCT FROM 'succeeded' OR p.refunded_cents <> 0
              OR p.amount_cents <> o.total_cents)""",
    "cancelled order kept money": """
        SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
        WHERE o.status = 'cancelled' AND p.status = 'succeeded' AND p.refunded_cents <> p.amount_cents""",
    "cancelled order holds stock": """
        SELECT DISTINCT o.id FROM orders o JOIN reservations r ON r.order_id = o.id
        WHERE o.status = 'cancelled' AND r.status <> 'released'""",
    "shipment without shipped status": """
        SELECT o.id FROM orders o JOIN shipments s ON s.order_id = o.id WHERE o.status <> 'shipped'""",
    "delivered more than once per key": """
        SELECT order_id FROM local_deliveries GROUP BY order_id, provider, payload->>'kind'
        HAVING COUNT(*) > 1""",
}


def audit(database_url: str, provider_ledger: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Violations by check name (empty lists when all is well)."""
    violations: dict[str, list[str]] = {}
    with engine_for(database_url).connect() as connection:
        for name, query in CHECKS.items():
            violations[name] = [str(row[0]) for row in connection.execute(text(query))]
        if provider_ledger is not None:
            orders = {str(row[0]): row[1] for row in connection.execute(text("SELECT id, status FROM orders"))}
            violations |= provider_checks(orders, provider_ledger)
    return violations


def provider_checks(orders: dict[str, str], ledger: list[dict[str, Any]]) -> dict[str, list[str]]:
    """At most one successful charge per order, and what the provider kept matches each order's state."""
    succeeded = [intent for intent in ledger if intent["status"] == "succeeded"]
    charges = Counter(intent["metadata"].get("order_id") for intent in succeeded)
    kept: Counter[str] = Counter()
    for intent in succeeded:
        kept[intent["metadata"].get("order_id")] += intent["amount"] - intent["amount_refunded"]
    return {
        "charged more than once": sorted(order for order, count in charges.items() if count > 1),
        "provider kept money for a cancelled order": sorted(
            order for order, amount in kept.items() if amount and orders.get(order) == "cancelled"
        ),
        "shipped order not charged at the provider": sorted(
            order for order, status in orders.items() if status == "shipped" and not kept[order]
        ),
    }


def violations_only(report: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: ids for name, ids in report.items() if ids}

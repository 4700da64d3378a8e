"""The ledger checks behind the invariants: run on any database, optionally against the providers' own records.

Names starting with INFO are findings a person should know about but that break no invariant (a refund made
from the dashboard after the goods left); `violations_only` leaves them out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from models.db import engine_for
from models.status import TERMINAL_SQL

INFO = "(info) "
LIVE_SHIPMENT = ("created", "picked_up")

# Stock is one ledger for all time. The counters and what is held now are checked whatever the window: one row
# per product, and the held reservations by product (ix_reservations_held_product, what is held, not history).
STOCK_CHECKS = {
    "stock not conserved or negative": (
        "SELECT id FROM products WHERE total <> available + reserved + shipped OR available < 0 OR reserved < 0"
    ),
    "reserved stock disagrees with held reservations": """
        SELECT p.id FROM products p LEFT JOIN reservations r ON r.product_id = p.id AND r.status = 'held'
        GROUP BY p.id, p.reserved HAVING p.reserved <> COALESCE(SUM(r.quantity), 0)""",
}
# The shipped counter is the sum of every shipped reservation ever: it reads them all (390 ms beside a million
# orders), so only an audit without a window checks it.
ALL_TIME_CHECKS = {
    "shipped stock disagrees with shipped reservations": """
        SELECT p.id FROM products p LEFT JOIN reservations r ON r.product_id = p.id AND r.status = 'shipped'
        GROUP BY p.id, p.shipped HAVING p.shipped <> COALESCE(SUM(r.quantity), 0)""",
}
# The orders placed since :since (ix_orders_created), each check joined to its rows by their order's index.
# An order in flight breaks none of them: each looks at terminal orders only, or at one stuck past its lease.
ORDER_CHECKS = {
    "order stuck: not terminal, its lease run out long ago": f"""
        SELECT id FROM orders o WHERE o.created_at >= :since AND status NOT IN {TERMINAL_SQL}
        AND lease_expires_at < now() - make_interval(secs => :stuck_after_s)""",
    "shipped order not paid in full": """
        SELECT o.id FROM orders o LEFT JOIN payments p ON p.order_id = o.id
        WHERE o.created_at >= :since AND o.status = 'shipped'
          AND (p.status IS DISTINCT FROM 'succeeded' OR p.amount_cents <> o.total_cents)""",
    "shipped and refunded by the saga": """
        SELECT DISTINCT o.id FROM orders o JOIN payments p ON p.order_id = o.id JOIN refunds r ON r.payment_id = p.id
        WHERE o.created_at >= :since AND o.status = 'shipped' AND r.origin = 'saga'
          AND r.status IN ('succeeded', 'pending', 'requires_action')""",
    "cancelled order kept money": """
        SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
        WHERE o.created_at >= :since AND o.status = 'cancelled' AND p.status = 'succeeded'
          AND p.refunded_cents <> p.amount_cents AND p.dispute_status IS DISTINCT FROM 'lost'""",
    "finished order with an unsettled payment": """
        SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
        WHERE o.created_at >= :since AND o.status IN ('shipped', 'cancelled')
          AND p.status IN ('started', 'in_doubt', 'pending')""",
    "cancelled order holds stock": """
        SELECT DISTINCT o.id FROM orders o JOIN reservations r ON r.order_id = o.id
        WHERE o.created_at >= :since AND o.status = 'cancelled' AND r.status <> 'released'""",
    "shipment without shipped status": """
        SELECT o.id FROM orders o JOIN shipments s ON s.order_id = o.id
        WHERE o.created_at >= :since AND o.status <> 'shipped'""",
    "delivered more than once per key": """
        SELECT d.order_id FROM orders o JOIN local_deliveries d ON d.order_id = o.id WHERE o.created_at >= :since
        GROUP BY d.order_id, d.provider, d.payload->>'kind' HAVING COUNT(*) > 1""",
    INFO + "refunded or disputed outside the saga after shipment": """
        SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
        WHERE o.created_at >= :since AND o.status = 'shipped' AND (p.dispute_id IS NOT NULL OR EXISTS (
            SELECT 1 FROM refunds r WHERE r.payment_id = p.id AND r.origin = 'outside'))""",
}
CHECKS = STOCK_CHECKS | ALL_TIME_CHECKS | ORDER_CHECKS
_ORDERS = f"SELECT id, status FROM orders WHERE created_at >= :since AND status IN {TERMINAL_SQL}"
_REFUNDS = """
    SELECT r.provider_refund_id, r.status FROM orders o JOIN payments p ON p.order_id = o.id
    JOIN refunds r ON r.payment_id = p.id WHERE o.created_at >= :since"""
EVER = datetime(1970, 1, 1, tzinfo=UTC)
STUCK_AFTER_S = 900.0  # the reaper re-drives an order within seconds of its lease running out


def audit(
    database_url: str,
    provider_ledger: list[dict[str, Any]] | None = None,
    carrier_ledger: list[dict[str, Any]] | None = None,
    since: datetime = EVER,
    stuck_after_s: float = STUCK_AFTER_S,
) -> dict[str, list[str]]:
    """Violations by check name (empty lists when all is well), for the orders placed since `since`.

    With a window, the all-time checks (ALL_TIME_CHECKS) are left out: they read every order's rows ever.

    Every query reads one snapshot (REPEATABLE READ), so an order moving during the audit is seen in one
    state by all of them. The providers' records are held to the terminal orders of the window alone: an order
    in flight may hold a charge or a shipment that our commit has not recorded yet.
    """
    window = {"since": since, "stuck_after_s": stuck_after_s}
    violations: dict[str, list[str]] = {}
    engine = engine_for(database_url).execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as connection:
        for name, query in (CHECKS if since == EVER else windowed(CHECKS)).items():
            violations[name] = [str(row[0]) for row in connection.execute(text(query), window)]
        orders = {str(row[0]): row[1] for row in connection.execute(text(_ORDERS), window)}
        refunds = {row[0]: row[1] for row in connection.execute(text(_REFUNDS), window)}
    if provider_ledger is not None:
        ledger = [intent for intent in provider_ledger if intent["metadata"].get("order_id") in orders]
        violations |= provider_checks(orders, ledger) | refund_checks(refunds, ledger)
    if carrier_ledger is not None:
        violations |= carrier_checks(orders, [item for item in carrier_ledger if item["orderId"] in orders])
    return violations


def windowed(checks: dict[str, str]) -> dict[str, str]:
    """The checks an audit with a window runs: all but the all-time ones."""
    return {name: query for name, query in checks.items() if name not in ALL_TIME_CHECKS}


def provider_checks(orders: dict[str, str], ledger: list[dict[str, Any]]) -> dict[str, list[str]]:
    """At most one successful charge per order, and what the provider kept matches each order's state."""
    succeeded = [intent for intent in ledger if intent["status"] == "succeeded"]
    charges = Counter(intent["metadata"].get("order_id") for intent in succeeded)
    kept: Counter[str] = Counter()
    for intent in succeeded:
        lost = intent.get("amount_lost_to_disputes", 0)
        kept[intent["metadata"].get("order_id")] += intent["amount"] - intent["amount_refunded"] - lost
    return {
        "charged more than once": sorted(order for order, count in charges.items() if count > 1),
        "provider kept money for a cancelled order": sorted(
            order for order, amount in kept.items() if amount and orders.get(order) == "cancelled"
        ),
        "shipped order not charged at the provider": sorted(
            order for order, status in orders.items() if status == "shipped" and not charges[order]
        ),
    }


def refund_checks(ours: dict[str, str], ledger: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every refund the provider holds for an order of ours is in our ledger with the provider's status."""
    wrong = []
    for intent in ledger:
        if "order_id" not in intent["metadata"]:
            continue
        for refund in intent.get("refunds", []):
            if isinstance(refund, dict) and ours.get(refund["id"]) != refund["status"]:
                wrong.append(f"{intent['metadata']['order_id']}:{refund['id']}")
    return {"refund ledger disagrees with the provider": sorted(wrong)}


def carrier_checks(orders: dict[str, str], shipments: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Goods at the carrier exactly for the shipped orders: one live shipment each, none for the others."""
    live: defaultdict[str, int] = defaultdict(int)
    for shipment in shipments:
        if shipment["status"] in LIVE_SHIPMENT:
            live[shipment["orderId"]] += 1
    return {
        "carrier holds a shipment for an order not shipped": sorted(
            order for order in live if orders.get(order) != "shipped"
        ),
        "shipped order without a shipment at the carrier": sorted(
            order for order, status in orders.items() if status == "shipped" and not live[order]
        ),
        "more than one shipment at the carrier": sorted(order for order, count in live.items() if count > 1),
    }


def violations_only(report: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: ids for name, ids in report.items() if ids and not name.startswith(INFO)}

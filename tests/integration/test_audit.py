"""The audit on a database that holds orders in flight and years of history: `pipeline.audit` and `orderctl audit`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from models.db import engine_for
from pipeline.audit import audit, violations_only
from tests.factories import make_order, make_product
from tests.integration.test_orderctl import orderctl, orderctl_json

STUCK = "order stuck: not terminal, its lease run out long ago"
UNPAID = "shipped order not paid in full"
SHIPPED_SUM = "shipped stock disagrees with shipped reservations"


def execute(db_url: str, statement: str, **parameters: Any) -> None:
    with engine_for(db_url).begin() as connection:
        connection.execute(text(statement), parameters)


def order(db_url: str, product: uuid.UUID, *, status: str, placed_days_ago: float = 0, lease_min: float = 5) -> str:
    """An order in `status`, placed that long ago, whose lease runs out in lease_min minutes (negative: ran out)."""
    order_id = make_order(db_url, [(product, 1)])
    execute(
        db_url,
        """UPDATE orders SET status = :status, created_at = now() - make_interval(days => :days),
                  lease_expires_at = now() + make_interval(mins => :lease),
                  cancel_reason = CASE WHEN CAST(:status AS varchar) = 'cancelled' THEN 'PAYMENT_DECLINED' END
              WHERE id = :id""",
        status=status,
        days=placed_days_ago,
        lease=lease_min,
        id=order_id,
    )
    return str(order_id)


def test_an_order_in_flight_is_no_violation_and_one_stuck_long_past_its_lease_is(db_url: str) -> None:
    product = make_product(db_url)
    order(db_url, product, status="reserved")  # charging right now
    order(db_url, product, status="paid", lease_min=-2)  # just past its lease: the reaper's to re-drive
    stuck = order(db_url, product, status="confirmed", lease_min=-20)

    found = audit(db_url)

    assert violations_only(found) == {STUCK: [stuck]}


def test_since_audits_only_the_orders_placed_since_and_the_stock_whole(db_url: str) -> None:
    product = make_product(db_url)
    old = order(db_url, product, status="shipped", placed_days_ago=40)  # shipped without a payment: broken
    recent = order(db_url, product, status="shipped")
    execute(db_url, "UPDATE products SET available = available - 1, reserved = reserved + 1 WHERE id = :id", id=product)

    everything = violations_only(audit(db_url))
    last_week = violations_only(audit(db_url, since=datetime.now(UTC) - timedelta(days=7)))

    assert sorted(everything[UNPAID]) == sorted([old, recent])
    assert last_week[UNPAID] == [recent]
    assert last_week["reserved stock disagrees with held reservations"] == [str(product)]


def test_the_shipped_stock_sum_is_checked_by_the_whole_audit_and_left_out_of_a_window(db_url: str) -> None:
    product = make_product(db_url)
    # One unit counted as shipped without a shipped reservation behind it (total moves too: still conserved)
    execute(db_url, "UPDATE products SET shipped = shipped + 1, total = total + 1 WHERE id = :id", id=product)

    everything = violations_only(audit(db_url))
    last_day = audit(db_url, since=datetime.now(UTC) - timedelta(days=1))
    recent = orderctl_json("audit", "--database-url", db_url, "--since", "24h")

    assert everything == {SHIPPED_SUM: [str(product)]}
    assert SHIPPED_SUM not in last_day and violations_only(last_day) == {}
    assert recent["ok"] is True and recent["skipped"] == [SHIPPED_SUM], "the window says what it left out"


def test_the_carrier_is_held_to_the_terminal_orders_only(db_url: str) -> None:
    # The carrier answered, our commit has not landed yet: a shipment for an order in flight is no violation.
    product = make_product(db_url)
    shipping = order(db_url, product, status="notified")
    cancelled = order(db_url, product, status="cancelled")
    shipments = [{"orderId": shipping, "status": "created"}, {"orderId": cancelled, "status": "created"}]

    found = audit(db_url, carrier_ledger=shipments)

    assert found["carrier holds a shipment for an order not shipped"] == [cancelled]


def test_orderctl_audit_since_reports_its_window_and_a_bad_one_is_refused_with_exit_2(db_url: str) -> None:
    product = make_product(db_url)
    order(db_url, product, status="shipped", placed_days_ago=3)

    recent = orderctl_json("audit", "--database-url", db_url, "--since", "24h")
    whole = orderctl_json("audit", "--database-url", db_url, "--since", "2020-01-01", exit_code=1)
    refused = orderctl("audit", "--database-url", db_url, "--since", "last tuesday")

    assert recent["ok"] is True
    assert datetime.fromisoformat(recent["since"]) > datetime.now(UTC) - timedelta(hours=25)
    assert {check["check"]: check["count"] for check in whole["checks"]}[UNPAID] == 1
    assert whole["since"] == "2020-01-01T00:00:00+00:00"
    assert refused.exit_code == 2
    assert "neither a duration like 24h or 7d nor a date" in " ".join(refused.output.replace("│", " ").split())

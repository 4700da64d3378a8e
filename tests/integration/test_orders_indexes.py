"""An order's moves are HOT updates (none writes an index entry, but the move to a terminal status), and what
looks for orders by where they stand still reads them through an index."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from api.order_list import page_query
from models.db import dispose_engines, engine_for
from pipeline import saga
from pipeline.audit import STOCK_CHECKS
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import order_row
from tests.factories import make_order, make_product
from workers import reaper
from workers.operator import views
from workers.saga.runner import run_actions

COUNTERS = text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'orders'")


def updates(db_url: str) -> tuple[int, int]:
    """(updates, of them HOT) of the orders table since the server started, as the statistics show them."""
    with engine_for(db_url).connect() as connection:
        updated, hot = connection.execute(COUNTERS).one()
    return int(updated), int(hot)


def flushed_updates(db_url: str, at_least: int) -> tuple[int, int]:
    """The counters once the saga's connections have reported theirs: a backend reports on exit."""
    dispose_engines()
    for attempt in Retrying(
        stop=stop_after_delay(10), wait=wait_fixed(0.1), reraise=True, retry=retry_if_exception_type(AssertionError)
    ):
        with attempt:
            counted = updates(db_url)
            assert counted[0] >= at_least, counted
    return counted


def test_every_move_of_an_order_but_the_last_is_a_hot_update(
    db_url: str, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])
    dispose_engines()
    before = flushed_updates(db_url, 0)

    run_actions(saga.FIRST_STEP, str(order_id))  # all five steps, each its own transaction

    assert order_row(db_url, order_id)["status"] == "shipped"
    updated, hot = (
        after - earlier for after, earlier in zip(flushed_updates(db_url, before[0] + 5), before, strict=True)
    )
    # One move per step; only the last changes an indexed column (terminal_status: NULL -> shipped).
    assert (updated, hot) == (len(saga.STEPS), len(saga.STEPS) - 1)


def test_no_index_on_orders_names_a_column_that_a_move_between_live_statuses_changes(db_url: str) -> None:
    with engine_for(db_url).connect() as connection:
        definitions = connection.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'orders'")).all()
    moved = ("status", "current_step", "lease_expires_at", "deliveries", "updated_at", "last_error")

    # Key columns, expressions and predicates alike: any of them changing makes an update write every index.
    named = {
        column for column in moved for index in definitions if re.search(rf"\b{column}\b", index.split(" USING ")[1])
    }
    assert named == set(), definitions


# What runs every sweep, every `stats`/`stuck`, and every filtered page: none may read the whole table.
STATEMENTS = {
    "reaper: stalled count": select(func.count()).where(*reaper.EXPIRED_LEASE),
    "reaper: stalled orders": reaper._stalled(500),
    "reaper: expired reservations": reaper._expired_reservations(900.0, 500),
    "stats: open counts": views.OPEN_COUNTS,
    "stuck: stalled": views.STALLED,
    "stuck: parked": views.PARKED,
}
# (client, status) of a page: a live status, a terminal one, a terminal one across every client.
PAGES = [("shop", "reserved"), ("shop", "cancelled"), (None, "shipped")]
HISTORY = 400  # shipped and cancelled orders, each with its stock settled: what only accumulates
PAGE = 10

HISTORY_SQL = (
    """INSERT INTO orders (client_id, user_id, status, cancel_reason, currency, total_cents, payment_method_id,
                           shipping_address, created_at)
       SELECT 'shop', 'user-' || n, CASE WHEN n % 4 = 0 THEN 'cancelled' ELSE 'shipped' END,
              CASE WHEN n % 4 = 0 THEN 'payment_declined' END, 'USD', 1250, 'pm_card_visa', '{}',
              now() - n * interval '1 hour'
       FROM generate_series(1, :orders) AS n""",
    """INSERT INTO reservations (order_id, product_id, quantity, status, created_at)
       SELECT id, :product, 1, CASE status WHEN 'shipped' THEN 'shipped' ELSE 'released' END, created_at FROM orders""",
    "ANALYZE orders, reservations",
)


@pytest.fixture
def history(db_url: str) -> str:
    product = make_product(db_url, stock=HISTORY)
    with engine_for(db_url).begin() as connection:
        for statement in HISTORY_SQL:
            connection.execute(text(statement), {"orders": HISTORY, "product": product})
    return db_url


def rows_read(db_url: str, sql: str, params: dict[str, object]) -> tuple[int, str]:
    """Rows every scan of the statement read (returned or filtered out), from EXPLAIN ANALYZE; and the plan."""
    with engine_for(db_url).connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")  # on a small table the planner would read it all
        [plan] = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).scalar_one()
        connection.rollback()  # EXPLAIN ANALYZE ran it: its row locks go
    scans = [node for node in _nodes(plan["Plan"]) if node["Node Type"].endswith("Scan")]
    read = sum((node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"] for node in scans)
    return round(read), " > ".join(f"{node['Node Type']} {node.get('Index Name', '')}" for node in scans)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("name", STATEMENTS)
def test_the_reaper_s_and_operator_s_reads_of_orders_do_not_read_the_history(history: str, name: str) -> None:
    compiled = STATEMENTS[name].compile(dialect=postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
    params = {key: 300.0 if value is None else value for key, value in compiled.params.items()} | {"limit": 200}

    read, plan = rows_read(history, str(compiled), params)

    assert read == 0, f"{read} rows read of {HISTORY} finished orders: {plan}"


@pytest.mark.parametrize(("client", "status"), PAGES)
def test_a_page_filtered_by_status_reads_only_its_own_rows(history: str, client: str | None, status: str) -> None:
    query, params = page_query(PAGE + 1, client_id=client, status=status, user_id=None, after=None)

    read, plan = rows_read(history, query, params)

    wanted = 0 if status == "reserved" else PAGE + 1
    assert read <= 2 * wanted, f"{read} rows read for a page of {wanted}: {plan}"


def test_the_audit_s_check_of_reserved_stock_reads_the_held_reservations_only(history: str) -> None:
    check = STOCK_CHECKS["reserved stock disagrees with held reservations"]

    read, plan = rows_read(history, check, {})

    assert read == 1, f"{read} rows read for one product and no held reservation beside {HISTORY} settled: {plan}"

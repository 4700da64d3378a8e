"""`orderctl bench --history N`: the same measurements again after a year of history, side by side with the empty run.

The history is N terminal orders across 100 clients over 12 months with their lines, written with COPY (the
list bench's loader, scripts/bench/list_data.py), and for each order what the saga would have left: its payment,
its reservation, its timeline (five steps), its idempotency key and its events (six, with small payloads),
derived in Postgres from the copied orders. Then the chosen phases run again on that database, and the
operator's reads are timed on both: one reaper sweep, `orderctl stats`, `orderctl stuck`, `orderctl audit
--since 24h`, the console's pages.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import psycopg

from scripts.bench import list_data
from scripts.bench.config import BenchConfig
from scripts.bench.console_pages import page_p99_ms
from scripts.bench.database import LOAD_CLIENT, Target, remove_bench_orders

CLIENTS = 100
TIMINGS = 5  # each operator read is timed this many times; the median is reported
# The open orders both columns' operator reads see (see same_open_orders).
LIVE_AT_READS = 500
PARKED_AT_READS = 200
SETTLE_S = 300.0  # the longest the bench waits for autovacuum after loading the history

# What the saga leaves behind an order, derived from the copied orders (set-based: no row leaves Postgres).
DERIVED = {
    "payments": """
        INSERT INTO payments (order_id, idempotency_key, intent_id, amount_cents, currency, status, refunded_cents,
                              created_at, updated_at)
        SELECT id, id || ':charge_payment', 'pi_' || replace(id::text, '-', ''), total_cents, currency, 'succeeded',
               0, created_at, updated_at
        FROM orders WHERE status <> 'cancelled'""",
    "saga_steps": """
        INSERT INTO saga_steps (order_id, step, kind, attempt, outcome, started_at, finished_at, duration_ms)
        SELECT o.id, s.step, 'action', 1, 'succeeded', o.created_at + s.n * interval '1 second',
               o.created_at + s.n * interval '1 second' + interval '40 milliseconds', 40
        FROM orders o, (VALUES (1, 'reserve_stock'), (2, 'charge_payment'), (3, 'confirm'), (4, 'notify'),
                               (5, 'ship')) AS s (n, step)""",
    # Shipped orders' stock left as shipped reservations (and the products' shipped counters moved with it), the
    # others' as released: the audit's stock checks read reservations by product, whatever the window.
    "reservations": """
        INSERT INTO reservations (order_id, product_id, quantity, status, created_at, updated_at)
        SELECT o.id, l.product_id, l.quantity, CASE WHEN o.status = 'shipped' THEN 'shipped' ELSE 'released' END,
               o.created_at, o.updated_at
        FROM orders o JOIN order_lines l ON l.order_id = o.id""",
    "products": """
        UPDATE products SET shipped = products.shipped + s.quantity, total = products.total + s.quantity
        FROM (SELECT product_id, sum(quantity) AS quantity FROM reservations WHERE status = 'shipped'
              GROUP BY product_id) AS s
        WHERE products.id = s.product_id""",
    "idempotency_keys": """
        INSERT INTO idempotency_keys (client_id, key, request_hash, order_id, response_code, response_body, created_at)
        SELECT client_id, id::text, md5(id::text), id, 201, '{}', created_at FROM orders""",
    "order_events": """
        INSERT INTO order_events (order_id, client_id, sequence, type, payload, created_at)
        SELECT o.id, o.client_id, e.n, t.type, jsonb_build_object('type', t.type, 'sequence', e.n),
               o.created_at + e.n * interval '1 second'
        FROM orders o, (VALUES (1, 'order.accepted'), (2, 'order.reserved'), (3, 'order.paid'),
                               (4, 'order.confirmed'), (5, 'order.notified'), (6, NULL)) AS e (n, type),
             LATERAL (SELECT coalesce(e.type, 'order.' || o.status) AS type) AS t""",
}


def load_history(target: Target, orders: int) -> dict[str, Any]:
    """Replace every order with `orders` terminal ones and what they left; seconds per part."""
    timings = list_data.load(
        target.libpq(), orders, list_data.client_ids(CLIENTS), list_data.seed_products(target.libpq()), seed=17
    )
    with psycopg.connect(target.libpq(), autocommit=True) as conn:
        for table, statement in DERIVED.items():
            began = time.perf_counter()
            conn.execute(statement)
            timings[f"derive_{table}_s"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute(f"VACUUM (ANALYZE) {', '.join(DERIVED)}")
        timings["vacuum_analyze_derived_s"] = time.perf_counter() - began
        for table in ("orders", *DERIVED):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - our own table names
            timings[f"rows_{table}"] = row[0] if row else 0
        timings |= settle(conn, target)
    return timings


def settle(conn: psycopg.Connection[Any], target: Target, wait_s: float = SETTLE_S) -> dict[str, Any]:
    """Let the load's aftermath pass before measuring: write its dirty pages out now (CHECKPOINT) and wait for
    the autovacuum workers it woke, so the history's runs pay for the history and not for having loaded it."""
    began = time.perf_counter()
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        target.note("CHECKPOINT needs a superuser on this database: the history's runs may pay for the load")
    deadline = began + wait_s
    while (workers := _autovacuum_workers(conn)) and time.perf_counter() < deadline:
        time.sleep(1.0)
    if workers:
        target.note(f"{workers} autovacuum worker(s) still ran {wait_s:.0f} s after the load")
    return {"settle_s": time.perf_counter() - began, "autovacuum_left": workers}


def _autovacuum_workers(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").fetchone()
    return row[0] if row else 0


def operator_reads(target: Target) -> dict[str, float]:
    """Median milliseconds of one reaper sweep, `orderctl stats`, `orderctl stuck` and `audit --since 24h`, and
    the p99 of each console page (scripts/bench/console_pages.py).

    The sweep is the reaper's own: it re-drives what it finds stalled (the intake phase's orders, which no
    worker took), so it gets a broker on the bench's Redis, as the reaper's entry point would.
    """
    from models.db import dispose_engines
    from pipeline.audit import audit
    from workers.operator.views import open_counts, stuck, throughput
    from workers.reaper import Policy, sweep

    database_url = target.database_url
    same_open_orders(target)

    reads: dict[str, Callable[[], object]] = {
        "reaper sweep": lambda: sweep(database_url, Policy()),
        # What the reaper adds every 8th sweep: the open-orders gauge and the kept-money net (its week's payments).
        "reaper counts and kept-money net": lambda: _every_eighth_sweep(database_url),
        "orderctl stats": lambda: (open_counts(database_url), throughput(database_url, 10)),
        "orderctl stuck": lambda: stuck(database_url, 300.0),
        "orderctl audit --since 24h": lambda: audit(database_url, since=datetime.now(UTC) - timedelta(days=1)),
    }
    with _broker_on(target.redis_url):
        timings = {name: _median_ms(read) for name, read in reads.items()}
        timings |= page_p99_ms(target)  # the console's app installs its broker too: inside the block
    dispose_engines()  # an idle pooled connection would hold up the next phase's quiet counters
    return timings


def same_open_orders(target: Target) -> None:
    """Replace what the last phase left (a backlog whose size depends on how far the open loop fell behind) with
    the same open orders on both sides: LIVE_AT_READS in flight, lease running, and PARKED_AT_READS parked.

    So the reaper re-drives nothing and `stuck` lists as many parked orders on both sides (the history's own 1%
    parked come on top), and what differs between the two columns is the history alone.
    """
    with psycopg.connect(target.libpq()) as conn:
        remove_bench_orders(conn)
        for status, number, lease in (
            ("reserved", LIVE_AT_READS, "now() + interval '1 hour'"),
            ("needs_attention", PARKED_AT_READS, "NULL"),
        ):
            conn.execute(
                "INSERT INTO orders (client_id, user_id, status, currency, total_cents, payment_method_id, "
                "shipping_address, last_error, current_step, lease_expires_at) "
                f"SELECT %s, 'bench-open-' || n, %s, 'USD', 1250, 'pm_card_visa', '{{}}', %s, NULL, {lease} "
                "FROM generate_series(1, %s) AS n",
                (LOAD_CLIENT, status, list_data.PARKED_ERROR if status == "needs_attention" else None, number),
            )


def _every_eighth_sweep(database_url: str) -> None:
    """What the reaper adds every 8th sweep: the open-orders gauge, then the kept-money net."""
    from workers.reaper import count_by_status, refund_late_charges

    count_by_status(database_url)
    refund_late_charges(database_url)


def retention_beside_saga(config: BenchConfig, target: Target, history: dict[str, Any]) -> dict[str, Any]:
    """One more saga run on the history with retention draining its old rows beside it, against the runs without."""
    from scripts.bench.report import summarize
    from scripts.bench.saga_phase import saga_run

    alone = _median(summarize(history["phases"]["orderflow"]), ("orders_per_s",))
    run = saga_run("orderflow", config, target, config.repeat, beside=lambda: pruning(target.database_url))
    beside, found = run["orders_per_s"], dict(run["beside"])
    return found | {
        "saga_alone_orders_per_s": alone,
        "saga_with_retention_orders_per_s": beside,
        "ratio": beside / alone if alone else None,
        "shipped": run["shipped"],
    }


@contextmanager
def pruning(database_url: str) -> Iterator[dict[str, Any]]:
    """The reaper's retention pass back to back in a thread while the block runs, as a backlog of old rows drains.

    Yields a dict filled when the block ends: passes, rows pruned by table and per second, and pass durations.
    """
    from pipeline.config import Settings
    from workers.retention import retention_pass

    settings = Settings(database_url=database_url)
    stop, passes, pruned = threading.Event(), list[float](), Counter[str]()

    def drain() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            pruned.update(retention_pass(settings))
            passes.append(time.perf_counter() - began)

    found: dict[str, Any] = {}
    thread = threading.Thread(target=drain, name="bench-retention", daemon=True)
    began = time.perf_counter()
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        seconds = time.perf_counter() - began
        found |= {
            "passes": len(passes),
            "rows_pruned": dict(pruned),
            "rows_pruned_per_s": sum(pruned.values()) / seconds,
            "pass_median_ms": statistics.median(passes) * 1000 if passes else None,
            "pass_max_ms": max(passes) * 1000 if passes else None,
        }


def order_count(target: Target) -> int:
    """How many orders the database holds (the history, and the last phase's orders)."""
    with psycopg.connect(target.libpq()) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _broker_on(redis_url: str) -> Iterator[None]:
    """Dramatiq's global broker on this Redis for the block, then the one before it (a test process has its own)."""
    from pipeline.config import Settings
    from workers.broker import install

    previous = dramatiq.broker.global_broker
    install(Settings(redis_url=redis_url))
    try:
        yield
    finally:
        if previous is not None:
            dramatiq.set_broker(previous)


def _median_ms(read: Callable[[], object]) -> float:
    took = []
    for _ in range(TIMINGS):
        began = time.perf_counter()
        read()
        took.append((time.perf_counter() - began) * 1000)
    return statistics.median(took)


def growth_rows(empty: dict[str, Any], history: dict[str, Any]) -> list[dict[str, Any]]:
    """(measure, empty, with history, ratio) for the saga, the intake and the operator's reads."""
    from scripts.bench.report import summarize

    rows = []
    for name, phase, key in (
        ("saga orderflow orders/s", "orderflow", ("orders_per_s",)),
        ("saga bare chain orders/s", "baseline", ("orders_per_s",)),
        ("intake open-loop p99 ms", "intake", ("open", "p99_ms")),
    ):
        if empty["phases"].get(phase) and history["phases"].get(phase):
            before, after = (_median(summarize(run["phases"][phase]), key) for run in (empty, history))
            rows.append(_row(name, before, after))
    # A read may exist on one side only (the console's 1,000th page needs the history's orders).
    for name in {**empty["operator_ms"], **history["operator_ms"]}:
        rows.append(_row(f"{name}, ms", empty["operator_ms"].get(name), history["operator_ms"].get(name)))
    return rows


def _median(summary: dict[str, Any], key: tuple[str, ...]) -> float | None:
    """The median at `key` of a `report.summarize` summary, None where there was no number."""
    node: Any = summary
    for part in key:
        node = node.get(part) if isinstance(node, dict) else None
    return float(node["median"]) if isinstance(node, dict) and "median" in node else None


def _row(name: str, before: float | None, after: float | None) -> dict[str, Any]:
    ratio = after / before if before and after is not None else None
    return {"measure": name, "empty": before, "history": after, "ratio": ratio}

"""The two chains' phases: the bare Dramatiq chain (baseline) and the real saga (orderflow), timed to terminal."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from subprocess import Popen
from typing import Any

import psycopg
from dramatiq.brokers.redis import RedisBroker

from models.status import TERMINAL_VALUES
from pipeline import saga
from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from scripts.bench import chain
from scripts.bench.config import BenchConfig
from scripts.bench.database import Target, flush_redis, fresh_orders
from scripts.bench.meter import Meter, counters_delta, cpu_delta, per_order, quiet_counters
from scripts.bench.processes import clean_env, dramatiq_workers, fake_stripe, wait_for_workers
from scripts.bench.statements import StatementLog
from scripts.devstack import localstack

Beside = Callable[[], AbstractContextManager[dict[str, Any]]]


def saga_run(
    phase: str,
    config: BenchConfig,
    target: Target,
    repetition: int,
    beside: Beside | None = None,
    statements: StatementLog | None = None,
) -> dict[str, Any]:
    """One repetition of a chain: fresh orders and processes, warm-up, then N orders timed to terminal.

    `beside` runs around the timed part only (retention pruning, in the growth bench); what it yields, filled in
    when it ends, is the run's "beside". `statements` is marked around the timed part, less the bench's probe.
    """
    warm_ids, ids = fresh_orders(target, config.warmup, config.orders, tag=f"{phase}-{repetition}")
    stats_before = quiet_counters(target)
    namespace, (actor, queue) = _first_step(phase)
    with ExitStack() as stack:
        meter = stack.enter_context(Meter(target.libpq("postgres"), target.dbname, target.redis_url))
        env = clean_env() | {"DATABASE_URL": target.database_url, "REDIS_URL": target.redis_url}
        if phase == "orderflow":
            stripe = stack.enter_context(fake_stripe(target.log_dir, f"stripe-{repetition}"))
            meter.watch("stripe", stripe[1])
            carrier = stack.enter_context(fake_stripe(target.log_dir, f"carrier-{repetition}", "scripts.fake_carrier"))
            meter.watch("carrier", carrier[1])
            metrics_dir = target.log_dir / f"worker-metrics-{repetition}"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir()
            env |= {
                "STRIPE_API_BASE": stripe[0],
                "STRIPE_API_KEY": LOCAL_STRIPE_KEY,
                "NOTIFY_FAULT_RATE": "0",
                "CARRIER_API_BASE": carrier[0],
                "CARRIER_API_KEY": LOCAL_CARRIER_KEY,
                "dramatiq_prom_db": str(metrics_dir),
                "dramatiq_prom_port": str(localstack.free_port()),
            }
            module = "workers.saga.worker"
        else:
            env |= {"BENCH_POOL_SIZE": str(config.threads)}
            module = "scripts.bench.chain:setup"
        log_name = f"{phase}-workers-{repetition}"
        workers = stack.enter_context(
            dramatiq_workers(module, config.processes, config.threads, env, target.log_dir, log_name)
        )
        meter.watch("workers", workers)
        broker = RedisBroker(url=target.redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
        stack.callback(broker.close)
        wait_for_workers(target.redis_url, namespace, config.processes, workers)
        probe = stack.enter_context(Probe(target.libpq()))
        send_all(broker, actor, queue, warm_ids)
        probe.wait_terminal(f"bench-warm-{phase}-{repetition}", len(warm_ids), workers)
        window = meter.snapshot()
        alongside = stack.enter_context(beside()) if beside else None  # left first: before the workers stop
        if statements:
            statements.skip.add(probe.conn.info.backend_pid)
            statements.mark_start()
        clock = time.perf_counter()
        send_all(broker, actor, queue, ids)
        outcomes = probe.wait_terminal(f"bench-{phase}-{repetition}", len(ids), workers)
        seconds = time.perf_counter() - clock
        if statements:
            statements.mark_end()
        cpu = cpu_delta(window, meter.snapshot())
        polls = probe.transactions
        if not meter.postgres_measured:
            target.note("Postgres CPU not measured: its backends are not local processes")
    after = quiet_counters(target)
    stats = counters_delta(stats_before, after)
    flush_redis(target.redis_url)
    orders = len(ids)
    return {
        "orders": orders,
        "shipped": outcomes.get("shipped", 0),
        "not_shipped": orders - outcomes.get("shipped", 0),
        "seconds": seconds,
        "orders_per_s": orders / seconds,
        "commits_per_order": (stats["xact_commit"] - polls) / (orders + len(warm_ids)),
        "rollbacks_per_order": stats["xact_rollback"] / (orders + len(warm_ids)),
        # Less the bench's own probe, and the connection the first reading opened for the orders table's counters.
        "connections_opened": stats["sessions"] - 2,
        "orders_updates_per_order": stats["orders_updates"] / (orders + len(warm_ids)),
        "orders_hot_update_share": stats["orders_hot_updates"] / max(1, stats["orders_updates"]),
        # The orders table as the run left it (sizes are not deltas): dead rows awaiting vacuum per live one, and
        # bytes of heap and of its indexes per live row.
        "orders_dead_per_live": after["orders_dead_rows"] / max(1, after["orders_live_rows"]),
        "orders_autovacuums": stats["orders_autovacuums"],
        "orders_heap_bytes_per_row": after["orders_heap_bytes"] / max(1, after["orders_live_rows"]),
        "orders_index_bytes_per_row": after["orders_index_bytes"] / max(1, after["orders_live_rows"]),
        "cpu_s_per_order": per_order(cpu, orders),
        "peak_rss_mib_per_worker": meter.peak_rss_mib("workers", children_only=True),
        "worker_processes": meter.process_count("workers", children_only=True),
    } | ({"beside": alongside} if alongside is not None else {})


def _first_step(phase: str) -> tuple[str, tuple[str, str]]:
    if phase == "orderflow":
        return "orderflow", (saga.FIRST_STEP, saga.queue_of(saga.FIRST_STEP))
    return chain.NAMESPACE, (chain.FIRST[0], chain.FIRST[1])


def send_all(broker: RedisBroker, actor: str, queue: str, order_ids: list[str]) -> None:
    broker.declare_queue(queue)
    for order_id in order_ids:
        broker.enqueue(chain.message(actor, queue, order_id))


class Probe:
    """The bench's own connection to the throwaway database; counts its transactions so they can be taken off."""

    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.transactions = 0

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.conn.close()

    def wait_terminal(
        self, user: str, count: int, workers: Popen[bytes], timeout_s: float | None = None
    ) -> dict[str, int]:
        """Poll every 20 ms until `count` orders of `user` are terminal; returns them by status."""
        deadline = time.monotonic() + (timeout_s or max(120.0, count / 10))
        query = "SELECT status, count(*) FROM orders WHERE user_id = %s AND status = ANY(%s) GROUP BY status"
        while True:
            self.transactions += 1
            found: dict[str, int] = dict(self.conn.execute(query, (user, list(TERMINAL_VALUES))).fetchall())
            if sum(found.values()) >= count:
                return found
            if time.monotonic() > deadline or workers.poll() is not None:
                terminal = sum(found.values())
                raise RuntimeError(f"{terminal}/{count} orders of {user} terminal; workers: {workers.args!r}")
            time.sleep(0.02)

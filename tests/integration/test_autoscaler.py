"""The autoscaler as the Procfile runs it: real `dramatiq workers.saga.worker` processes scaled by a real backlog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from models.db import engine_for
from scripts.devstack.localstack import free_port
from scripts.devstack.processes import SOURCE_ROOT as PROJECT_ROOT
from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.saga_helpers import wait_until_terminal
from workers.enqueue import send, send_webhook, start_saga

# Short enough for a test, with the same shape as production: sustained, hysteresis, cooldown.
FAST = [
    "--interval",
    "0.25",
    "--sustain-up",
    "1",
    "--sustain-down",
    "2",
    "--cooldown",
    "1",
    "--up-backlog",
    "10",
    "--down-backlog",
    "2",
    "--up-age",
    "60",
    "--grace",
    "15",
]


@dataclass(frozen=True)
class Autoscaler:
    """A running `python -m workers.autoscale` and its metrics endpoint."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    metrics_dir: Path

    def metric(self, name: str, **labels: str) -> float | None:
        page = httpx.get(self.metrics_url, timeout=2).text
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def worker_parents(self) -> list[psutil.Process]:
        """The `dramatiq workers.saga.worker` processes it runs (including ones finishing their messages)."""
        children = psutil.Process(self.process.pid).children()
        return [child for child in children if child.status() != psutil.STATUS_ZOMBIE]


@contextmanager
def autoscaler(tmp_path: Path, *args: str, **env: str) -> Iterator[Autoscaler]:
    """Start the autoscaler on the test run's Redis and Postgres; SIGTERM it (and so its workers) after."""
    port, metrics_dir = free_port(), tmp_path / "worker-metrics"
    command = [
        sys.executable,
        "-m",
        "workers.autoscale",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--metrics-dir",
        str(metrics_dir),
        *args,
    ]
    clean = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
    process = subprocess.Popen(command, env=clean | env, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        yield Autoscaler(process, f"http://127.0.0.1:{port}/metrics", metrics_dir)
    finally:
        if process.poll() is None:  # still running, unless the test killed it
            process.send_signal(signal.SIGTERM)
            try:
                assert process.wait(40) == 0, "the autoscaler stops its workers and exits cleanly"
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)


def eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    for attempt in Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(0.2),
        reraise=True,
        retry=retry_if_exception_type((AssertionError, httpx.HTTPError)),
    ):
        with attempt:
            assert check(), what


@contextmanager
def product_locked(db_url: str, product_id: uuid.UUID) -> Iterator[None]:
    """Hold the product's row lock: every reserve_stock of it waits, so the backlog cannot drain."""
    with engine_for(db_url).begin() as connection:
        connection.execute(text("SELECT 1 FROM products WHERE id = :id FOR UPDATE"), {"id": product_id})
        yield


def running(scaler: Autoscaler, workers: int) -> Callable[[], bool]:
    return lambda: scaler.metric("orderflow_workers") == workers and len(scaler.worker_parents()) == workers


def test_workers_scale_up_under_a_sustained_backlog_and_back_down_to_the_minimum_once_it_drains(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, tmp_path: Path
) -> None:
    product = make_product(db_url, stock=1_000)
    order_ids = [make_order(db_url, [(product, 1)]) for _ in range(120)]
    with autoscaler(tmp_path, "--min", "1", "--max", "3", "--threads", "2", *FAST) as scaler:
        eventually(running(scaler, 1), 30, "the minimum of one worker")

        with product_locked(db_url, product):
            for order_id in order_ids:
                start_saga(order_id)
            eventually(running(scaler, 3), 30, "three workers under a backlog of 120")
            assert (scaler.metric("orderflow_queue_messages", queue="stock", state="ready") or 0) > 50
            assert (scaler.metric("orderflow_autoscaler_decisions_total", action="up") or 0) >= 1

        orders = wait_until_terminal(db_url, order_ids, seconds=60)
        eventually(running(scaler, 1), 30, "back to the minimum once the queues drained")
        assert (scaler.metric("orderflow_autoscaler_decisions_total", action="down") or 0) >= 2, "3 -> 2 -> 1"
        assert scaler.metric("orderflow_queue_messages", queue="stock", state="in_flight") == 0
        assert scaler.metric("orderflow_autoscaler_decisions_total", action="restart") == 0
    assert {order.status for order in orders.values()} == {"shipped"}, "no order lost while workers came and went"


@pytest.mark.parametrize("victim", ["worker", "parent"])
def test_a_worker_killed_with_sigkill_is_replaced_and_its_live_metrics_are_dropped(
    victim: str, db_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with autoscaler(tmp_path, "--min", "1", "--max", "1", "--threads", "2", *FAST) as scaler:
        eventually(running(scaler, 1), 30, "one worker")
        # A message for no order is dead-lettered: once it is, the worker has booted and is consuming.
        # (Killed while still booting, its parent would wait out Dramatiq's 30 s worker-fork timeout first.)
        send("reserve_stock", uuid.uuid4())
        eventually(lambda: redis_client.zcard("orderflow:stock.XQ") == 1, 30, "the worker consumes")
        [parent] = scaler.worker_parents()
        [worker] = parent.children()
        live_files = f"gauge_live*_{worker.pid}.db"
        eventually(lambda: any(scaler.metrics_dir.glob(live_files)), 30, "the worker writes its live gauges")

        os.kill(worker.pid if victim == "worker" else parent.pid, signal.SIGKILL)

        eventually(
            lambda: scaler.metric("orderflow_autoscaler_decisions_total", action="restart") == 1,
            30,
            "the restart is counted",
        )
        eventually(lambda: running(scaler, 1)() and scaler.worker_parents()[0].pid != parent.pid, 30, "a new worker")
        # Killing the parent orphans its worker: the autoscaler stops that one too.
        eventually(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 30, "no orphan")
        eventually(lambda: not any(scaler.metrics_dir.glob(live_files)), 10, "the dead worker's live gauges are gone")


def test_workers_stop_when_the_autoscaler_itself_is_killed(redis_client: redis.Redis, tmp_path: Path) -> None:
    with autoscaler(tmp_path, "--min", "2", "--max", "2", "--threads", "2", *FAST) as scaler:
        eventually(running(scaler, 2), 30, "two workers")
        parents = scaler.worker_parents()
        eventually(lambda: all(len(parent.children()) == 1 for parent in parents), 30, "each forked its worker")
        processes = [process for parent in parents for process in [parent, *parent.children()]]

        scaler.process.kill()  # SIGKILL: no chance to stop its workers itself

        scaler.process.wait(10)

        def gone(p: psutil.Process) -> bool:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE

        eventually(lambda: all(gone(p) for p in processes), 30, "no worker outlives its supervisor")


def test_saga_workers_leave_the_webhooks_queue_to_workers_of_its_own(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, tmp_path: Path
) -> None:
    # A backlog of shops' webhooks (slow shops) is neither taken by the saga's workers, nor counted to scale them.
    waiting = redis_client.llen("orderflow:webhooks")
    for _ in range(60):
        send_webhook(uuid.uuid4())  # deliveries that do not exist: a webhook worker drops each at once
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])
    with autoscaler(tmp_path / "saga", "--min", "1", "--max", "2", "--threads", "2", *FAST) as saga:
        start_saga(order_id)
        assert wait_until_terminal(db_url, [order_id], seconds=30)[order_id].status == "shipped"
        assert saga.metric("orderflow_queue_messages", queue="stock", state="ready") == 0
        assert saga.metric("orderflow_queue_messages", queue="webhooks", state="ready") is None, "not its queue"
        assert not saga.metric("orderflow_autoscaler_decisions_total", action="up"), "60 waiting, none its own"
        assert saga.metric("orderflow_workers") == 1
    assert redis_client.llen("orderflow:webhooks") == waiting + 60

    with autoscaler(tmp_path / "webhooks", "--queue", "webhooks", "--min", "1", "--threads", "2", *FAST) as hooks:
        eventually(lambda: redis_client.llen("orderflow:webhooks") == 0, 30, "the webhook worker takes them")
        assert hooks.metric("orderflow_queue_messages", queue="stock", state="ready") is None


def test_a_queue_that_does_not_exist_is_refused_with_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "workers.autoscale", "--queue", "webhook", "--metrics-dir", str(tmp_path)]
    clean = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
    finished = subprocess.run(command, env=clean, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2
    assert "no such queue: webhook" in finished.stderr and "Traceback" not in finished.stderr

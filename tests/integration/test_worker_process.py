"""The worker as the Procfile runs it: `dramatiq workers` in its own process, with its metrics endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from scripts.fake_stripe import FakeStripeServer
from scripts.localstack import free_port
from tests.factories import make_order, make_product
from tests.saga_helpers import succeeded_charges, timeline, wait_until_terminal
from workers.dispatch import start_saga

StartWorker = Callable[..., str]


@pytest.fixture
def start_worker(db_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[StartWorker]:
    """Start `dramatiq workers` (1 process x 4 threads) with extra environment; returns its metrics URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> str:
        port = free_port()
        metrics_env = {"dramatiq_prom_db": str(tmp_path), "dramatiq_prom_port": str(port)}
        command = [sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "4"]
        started.append(subprocess.Popen(command, env=os.environ | metrics_env | env, start_new_session=True))
        return f"http://127.0.0.1:{port}/metrics"

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def scrape(url: str, *wanted: str) -> str:
    """The worker's metrics page, once it shows every wanted line prefix."""
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.2), reraise=True,
                            retry=retry_if_exception_type((AssertionError, httpx.HTTPError))):  # fmt: skip
        with attempt:
            page = httpx.get(url, timeout=2).text
            missing = [line for line in wanted if line not in page]
            assert not missing, f"not exported yet: {missing}"
    return page


def test_a_worker_process_ships_an_order_and_exports_step_and_order_metrics(
    db_url: str, start_worker: StartWorker, stripe_server: FakeStripeServer
) -> None:
    metrics_url = start_worker()
    order_id = make_order(db_url, [(make_product(db_url), 1)])

    start_saga(order_id)

    assert wait_until_terminal(db_url, [order_id], seconds=60)[order_id].status == "shipped"
    scrape(
        metrics_url,
        'orderflow_step_duration_seconds_count{kind="action",outcome="succeeded",step="ship"} 1.0',
        'orderflow_orders_finished_total{status="shipped"} 1.0',
        "orderflow_order_time_to_ship_seconds_count 1.0",
        'dramatiq_messages_total{actor_name="reserve_stock",queue_name="stock"} 1.0',
    )


def test_a_step_that_keeps_failing_past_its_retries_is_compensated_as_retries_exhausted(
    db_url: str, start_worker: StartWorker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 1)])
    fast_retries = {"notify": {"max_retries": 2, "min_backoff_ms": 10, "max_backoff_ms": 50}}
    metrics_url = start_worker(NOTIFY_FAULT_RATE="1.0", STEP_RETRIES=json.dumps(fast_retries))

    start_saga(order_id)
    order = wait_until_terminal(db_url, [order_id], seconds=60)[order_id]

    assert (order.status, order.cancel_reason) == ("cancelled", "RETRIES_EXHAUSTED")
    steps = timeline(db_url, order_id)
    assert steps.count(("notify", "retrying")) == 3, "the first try and both retries"
    assert ("notify", "failed") in steps
    assert ("send_cancellation", "skipped") in steps, "no confirmation was sent, so no cancellation either"
    [charge] = succeeded_charges(stripe_server.ledger(), order_id)
    assert charge["amount_refunded"] == charge["amount"]
    scrape(metrics_url, 'orderflow_compensations_total{reason="RETRIES_EXHAUSTED"} 1.0')

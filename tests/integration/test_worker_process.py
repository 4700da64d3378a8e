"""The worker as the Procfile runs it: `dramatiq workers.saga.worker` under the autoscaler, which serves its metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.integration.test_autoscaler import autoscaler
from tests.saga_helpers import succeeded_charges, timeline, wait_until_terminal
from workers.enqueue import start_saga

StartWorker = Callable[..., str]


@pytest.fixture
def start_worker(db_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[StartWorker]:
    """Start one `dramatiq workers.saga.worker` process (x 4 threads) under the autoscaler; returns the metrics URL."""
    with ExitStack() as running:

        def start(**env: str) -> str:
            scaler = running.enter_context(autoscaler(tmp_path, "--min", "1", "--max", "1", "--threads", "4", **env))
            return scaler.metrics_url

        yield start


def scrape(url: str, *wanted: str) -> str:
    """The worker's metrics page, once it shows every wanted line prefix."""
    for attempt in Retrying(
        stop=stop_after_delay(20),
        wait=wait_fixed(0.2),
        reraise=True,
        retry=retry_if_exception_type((AssertionError, httpx.HTTPError)),
    ):
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
        "orderflow_workers 1.0",  # the autoscaler's own metrics on the same endpoint
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

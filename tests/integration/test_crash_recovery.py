"""Real worker processes killed mid-step: the order resumes within its lease, is charged once, and a message
that keeps killing its worker is given up on. A SIGTERMed worker hands its messages back."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import text

from models.db import engine_for
from scripts.devstack.localstack import free_port
from scripts.devstack.processes import Child, python, venv_tool
from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.saga_helpers import count, succeeded_charges, wait_until_terminal
from workers.enqueue import send, start_saga

Start = Callable[..., Child]
LEASE_S = 2


@pytest.fixture
def start(db_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Start]:
    """Start `worker` (dramatiq, 1 process) or `reaper` processes with a short lease; all stopped after."""
    children: list[Child] = []

    def launch(kind: str, **env: str) -> Child:
        argv = {
            "worker": venv_tool("dramatiq", "workers.saga.worker", "--processes", "1", "--threads", "4"),
            "reaper": python("-m", "workers.reaper"),
        }[kind]
        settings = {"STEP_LEASE_S": str(LEASE_S), "REAPER_INTERVAL_S": "0.5", "REAPER_METRICS_PORT": str(free_port())}
        child = Child(f"{kind}-{len(children)}", argv, os.environ | settings | env, tmp_path).start()
        children.append(child)
        return child

    yield launch
    for child in children:
        child.stop()


def test_an_order_whose_worker_is_sigkilled_mid_charge_resumes_within_the_lease_and_is_charged_once(
    db_url: str, start: Start, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(latency_ms=1500)  # the charge is at the provider long enough to be killed there
    doomed = start("worker")
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    start_saga(order_id)

    wait_for(lambda: charge_attempts(db_url, order_id) == 1 and step_running(db_url, order_id), "the charge to start")
    doomed.kill()
    killed_at = time.monotonic()
    stripe_server.set_faults(latency_ms=0)
    start("worker"), start("reaper")

    final = wait_until_terminal(db_url, [order_id], seconds=60)[order_id]

    assert final.status == "shipped"
    assert time.monotonic() - killed_at < 30, "resumed by the reaper, not by Dramatiq's 60 s heartbeat"
    assert len(succeeded_charges(stripe_server.ledger(), order_id)) == 1
    assert count(db_url, "SELECT count(*) FROM payments WHERE order_id = :id", id=order_id) == 1


def test_a_message_that_keeps_killing_its_worker_is_given_up_and_the_order_compensated(
    db_url: str, start: Start, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(latency_ms=1000)
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    poison = {"MAX_REDELIVERIES": "2"}
    worker, kills = start("worker", **poison), 0
    start("reaper", **poison)
    start_saga(order_id)

    deadline = time.monotonic() + 90
    while order_status(db_url, order_id) in ("pending", "reserved") and time.monotonic() < deadline:
        if order_status(db_url, order_id) == "reserved" and step_running(db_url, order_id):
            worker.kill()  # the charge "kills its worker" every time it runs
            kills += 1
            worker = start("worker", **poison)
        time.sleep(0.05)

    final = wait_until_terminal(db_url, [order_id], seconds=60)[order_id]
    assert kills >= 3, "the first delivery and both re-drives were killed"
    assert (final.status, final.cancel_reason) == ("cancelled", "REDELIVERY_LIMIT")
    assert count(db_url, "SELECT available FROM products WHERE id = :id", id=product) == 5
    kept = sum(i["amount"] - i["amount_refunded"] for i in succeeded_charges(stripe_server.ledger(), order_id))
    assert kept == 0, "a charge that got through before a kill was refunded"


def test_a_sigtermed_worker_finishes_or_hands_back_its_messages_and_exits_cleanly(
    db_url: str, start: Start, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(latency_ms=400)  # charges are the bottleneck: 40 of them take 4 s on 4 threads
    product = make_product(db_url, stock=100)
    orders = [make_order(db_url, [(product, 1)]) for _ in range(40)]
    worker = start("worker")
    for order_id in orders:
        start_saga(order_id)
    # Stop at the first charge, not the first shipment: the queues are FIFO, so the first order ships only
    # after nearly every charge, and the few fast steps left could all finish before the signal lands.
    wait_for(lambda: charged(db_url) >= 1, "the first charge")

    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGTERM)
    assert worker.process.wait(60) == 0
    assert shipped(db_url) < len(orders), "the worker stopped mid-batch"

    start("worker")  # no reaper: only what the first worker handed back can finish the orders
    final = wait_until_terminal(db_url, orders, seconds=90)
    assert {order.status for order in final.values()} == {"shipped"}
    ledger = stripe_server.ledger()
    assert all(len(succeeded_charges(ledger, order_id)) == 1 for order_id in orders)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def step_running(db_url: str, order_id: uuid.UUID) -> bool:
    """True while some worker holds the order's row lock, i.e. is in the middle of a step."""
    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as connection:
        try:
            connection.execute("SELECT 1 FROM orders WHERE id = %s FOR UPDATE NOWAIT", (order_id,))
            return False
        except psycopg.errors.LockNotAvailable:
            return True


def charge_attempts(db_url: str, order_id: uuid.UUID) -> int:
    return count(db_url, "SELECT count(*) FROM payments WHERE order_id = :id", id=order_id)


def order_status(db_url: str, order_id: uuid.UUID) -> str:
    with engine_for(db_url).connect() as connection:
        return str(connection.execute(text("SELECT status FROM orders WHERE id = :id"), {"id": order_id}).scalar_one())


def shipped(db_url: str) -> int:
    return count(db_url, "SELECT count(*) FROM orders WHERE status = 'shipped'")


def charged(db_url: str) -> int:
    return count(db_url, "SELECT count(*) FROM payments WHERE status = 'succeeded'")


def test_a_closing_consumer_hands_back_the_messages_it_prefetched(redis_client: redis.Redis) -> None:
    from workers.backlog import backlog
    from workers.broker import installed

    broker = installed()

    ghosts = [uuid.uuid4() for _ in range(5)]
    for order_id in ghosts:
        send("reserve_stock", order_id)
    consumer = broker.consume("stock", prefetch=10, timeout=100)
    taken = next(consumer)  # fetches all five into the consumer's cache, hands out one
    assert taken is not None

    consumer.close()

    stock_queue = backlog(redis_client)["stock"]
    assert (stock_queue.ready, stock_queue.in_flight) == (4, 1), "only the message being worked on stays taken"

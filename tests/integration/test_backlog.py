"""The backlog read from the broker's Redis keys: ready, delayed, in flight and dead messages, and their age."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import redis
from sqlalchemy import text
from tenacity import Retrying, stop_after_delay, wait_fixed

from models.db import engine_for
from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.saga_helpers import wait_until_terminal
from workers.backlog import QueueBacklog, backlog
from workers.enqueue import send, start_saga


def wait_for(client: redis.Redis, queue: str, **expected: int) -> QueueBacklog:
    """Poll until the queue's counts are the expected ones; returns that reading."""
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            found = backlog(client)[queue]
            assert {name: getattr(found, name) for name in expected} == expected, found
    return found


@contextmanager
def order_locked(db_url: str, order_id: uuid.UUID) -> Iterator[None]:
    """Hold the order's row lock, as a long step would: a worker that fetched its message has to wait."""
    with engine_for(db_url).begin() as connection:
        connection.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order_id})
        yield


def test_an_idle_broker_shows_every_saga_queue_empty(redis_client: redis.Redis) -> None:
    queues = backlog(redis_client)

    assert sorted(queues) == ["fulfilment", "orders", "payments", "stock", "webhooks"]
    assert all(q == QueueBacklog(q.queue, 0, 0, 0, 0, None) and q.total == 0 for q in queues.values())


def test_sent_messages_are_ready_in_their_queue_and_aged_from_the_oldest(redis_client: redis.Redis) -> None:
    from workers.broker import installed

    broker = installed()

    a_minute_ago = int(time.time() * 1000) - 60_000
    stale: dramatiq.Message[None] = dramatiq.Message(
        queue_name="stock",
        actor_name="reserve_stock",
        args=(str(uuid.uuid4()),),
        kwargs={},
        options={},
        message_timestamp=a_minute_ago,
    )
    broker.enqueue(stale)
    send("reserve_stock", uuid.uuid4())
    send("charge_payment", uuid.uuid4())

    queues = backlog(redis_client)

    stock = queues["stock"]
    assert (stock.ready, stock.delayed, stock.in_flight, stock.dead, stock.total) == (2, 0, 0, 0, 2)
    assert stock.oldest_age_s is not None and 59 <= stock.oldest_age_s < 90
    assert queues["payments"].ready == 1
    assert queues["payments"].oldest_age_s is not None and queues["payments"].oldest_age_s < 30
    assert queues["orders"].total == queues["fulfilment"].total == 0


def test_a_message_sent_with_a_delay_is_delayed_not_ready(redis_client: redis.Redis) -> None:
    send("notify", uuid.uuid4(), delay_ms=60_000)

    fulfilment = backlog(redis_client)["fulfilment"]

    assert (fulfilment.ready, fulfilment.delayed, fulfilment.in_flight, fulfilment.total) == (0, 1, 0, 1)
    assert fulfilment.oldest_age_s is None


def test_a_delayed_message_a_worker_holds_until_its_eta_still_counts_as_delayed(
    redis_client: redis.Redis, worker: dramatiq.Worker
) -> None:
    send("notify", uuid.uuid4(), delay_ms=60_000)
    # The worker fetches it from the delay list at once and keeps it in memory until its eta.
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            assert redis_client.llen("orderflow:fulfilment.DQ") == 0

    fulfilment = backlog(redis_client)["fulfilment"]

    assert (fulfilment.ready, fulfilment.delayed, fulfilment.in_flight) == (0, 1, 0)


def test_a_message_a_worker_is_processing_is_in_flight_until_it_is_acked(
    db_url: str, redis_client: redis.Redis, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)])

    with order_locked(db_url, order_id):
        start_saga(order_id)
        held = wait_for(redis_client, "stock", ready=0, in_flight=1)
        assert held.total == 1 and held.oldest_age_s is None

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    assert all(queue.total == 0 for queue in backlog(redis_client).values())


def test_a_dead_lettered_message_counts_as_dead_and_no_longer_as_waiting(
    db_url: str, redis_client: redis.Redis, worker: dramatiq.Worker
) -> None:
    send("reserve_stock", uuid.uuid4())  # no such order: a permanent failure, dead-lettered

    stock = wait_for(redis_client, "stock", dead=1)

    assert (stock.ready, stock.delayed, stock.in_flight, stock.total) == (0, 0, 0, 0)

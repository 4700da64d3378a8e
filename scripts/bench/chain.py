"""The benchmark's baseline: the least a five-step Dramatiq + Postgres pipeline can cost.

Five actors on the saga's own queues, run by `dramatiq scripts.bench.chain:setup` (DATABASE_URL and
REDIS_URL from the environment). Each step is one Postgres transaction on the real tables, sent as one
statement in autocommit on a pooled psycopg 3 connection (one round trip, one commit): a guarded UPDATE
of the order row by primary key (`status` moves on, so a redelivery changes nothing) and, in the same
statement, the INSERT of its `saga_steps` row. Then it sends the next message. No ORM, no lease, no
ledger, no provider call, no logging: what is left is the broker and the database.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from psycopg_pool import ConnectionPool

from pipeline import saga

NAMESPACE = "benchchain"
# (actor, queue, status before, status after), in saga order.
CHAIN: tuple[tuple[str, str, str, str], ...] = tuple(
    (f"bench_{step.name}", step.queue, saga.status_before(step.name).value, step.done.value) for step in saga.STEPS
)
FIRST = CHAIN[0]

ADVANCE = """
WITH moved AS (
    UPDATE orders SET status = %(after)s, updated_at = now() WHERE id = %(id)s AND status = %(before)s RETURNING id
)
INSERT INTO saga_steps (order_id, step, kind, outcome, attempt, started_at, finished_at, duration_ms)
SELECT id, %(step)s, 'action', 'succeeded', 1, now(), clock_timestamp(), 0 FROM moved
"""

_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def message(actor: str, queue: str, order_id: str) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=(order_id,), kwargs={}, options={})


def pool() -> ConnectionPool:
    """One pool per worker process (created after the fork), as many connections as worker threads."""
    global _pool
    with _pool_lock:
        if _pool is None:
            size = int(os.environ.get("BENCH_POOL_SIZE", "8"))
            conninfo = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
            _pool = ConnectionPool(conninfo, min_size=size, max_size=size, kwargs={"autocommit": True}, open=True)
        return _pool


def advance(index: int, order_id: str) -> None:
    """Step `index` of the chain for one order: one statement, one commit, then the next message."""
    actor, _, before, after = CHAIN[index]
    with pool().connection() as connection:
        moved = connection.execute(ADVANCE, {"id": order_id, "before": before, "after": after, "step": actor}).rowcount
    if moved and index + 1 < len(CHAIN):
        following, queue, _, _ = CHAIN[index + 1]
        dramatiq.get_broker().enqueue(message(following, queue, order_id))


def setup() -> None:
    """The `dramatiq scripts.bench.chain:setup` entry point: a Redis broker with Dramatiq's defaults, and the actors."""
    broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=NAMESPACE)  # type: ignore[no-untyped-call]
    dramatiq.set_broker(broker)
    for index, (actor, queue, _, _) in enumerate(CHAIN):

        def step(order_id: str, index: int = index) -> None:
            advance(index, order_id)

        declare = dramatiq.actor(actor_name=actor, queue_name=queue, max_retries=3, min_backoff=200, max_backoff=5000)
        declare(step)

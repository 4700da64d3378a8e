"""The webhook actor, declared on the broker the worker's entry point installed (imported by workers/saga/worker.py).

Its own queue, so a backlog of slow shops never sits in front of a saga step, and its own retry budget: HTTP
failures are retried by the delivery itself (delayed messages), Dramatiq retries only a database or broker error.
"""

from __future__ import annotations

import uuid

import dramatiq

from pipeline.config import get_settings
from workers.broker import installed
from workers.enqueue import DELIVER_WEBHOOK, WEBHOOK_QUEUE
from workers.webhooks.delivery import deliver


@dramatiq.actor(
    actor_name=DELIVER_WEBHOOK,
    queue_name=WEBHOOK_QUEUE,
    broker=installed(),
    max_retries=5,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=300_000,
)
def deliver_webhook(delivery_id: str) -> None:
    """POST one order event to one shop's endpoint, signed; schedule its retry if it did not get a 2xx."""
    deliver(get_settings(), uuid.UUID(delivery_id))

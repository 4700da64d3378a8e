"""Send saga messages by actor name, with queues from the saga table, without importing any actor.

The API, the reaper, the operator's commands and the runner send through here, on the broker their
entry point installed (workers.broker.install).
"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq

from pipeline import saga
from workers.broker import installed


def send(actor: str, order_id: uuid.UUID | str, delay_ms: int | None = None, *, retried: int = 0) -> None:
    """Enqueue `actor(order_id)`; call only after the transaction that calls for it has committed.

    `retried` counts attempts already made elsewhere against the actor's retry budget (Dramatiq's `retries`).
    """
    options = {"retries": retried} if retried else {}
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=saga.queue_of(actor), actor_name=actor, args=(str(order_id),), kwargs={}, options=options
    )
    installed().enqueue(message, delay=delay_ms)


WEBHOOK_QUEUE = saga.WEBHOOK_QUEUE
DELIVER_WEBHOOK = "deliver_webhook"


def send_webhook(delivery_id: uuid.UUID | str, delay_ms: int | None = None) -> None:
    """Enqueue `deliver_webhook(delivery_id)` on the webhooks queue; call only after the commit that calls for it."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=WEBHOOK_QUEUE, actor_name=DELIVER_WEBHOOK, args=(str(delivery_id),), kwargs={}, options={}
    )
    installed().enqueue(message, delay=delay_ms)


def start_saga(order_id: uuid.UUID | str) -> None:
    """Hand a committed pending order to the first step of the saga."""
    send(saga.FIRST_STEP, order_id)

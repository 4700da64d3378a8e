"""Dead-lettered messages: what Dramatiq gave up on, by queue with order ids.

Dramatiq's Redis broker keeps them in `<namespace>:<queue>.XQ` (a sorted set by time) with their
bodies in `<namespace>:<queue>.XQ.msgs`. Re-driving (`workers.operator.actions.requeue`) does not replay
the stale message: it re-sends the order's due actor from its recorded state, like `retry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
import redis

from pipeline import saga

# The saga's queues and the webhooks' (a webhook letter names a delivery, re-driven from Postgres by the reaper).
QUEUES = sorted({step.queue for step in saga.STEPS} | {"orders", saga.WEBHOOK_QUEUE})


@dataclass(frozen=True)
class DeadLetter:
    """One message Dramatiq dead-lettered."""

    queue: str
    message_id: str
    actor: str
    order_id: str | None
    failed_at_ms: int


def dead_letters(client: redis.Redis, namespace: str = "orderflow") -> list[DeadLetter]:
    """Every dead-lettered message of the saga's queues, oldest first."""
    found = []
    for queue in QUEUES:
        key = f"{namespace}:{queue}.XQ"
        entries: list[tuple[bytes, float]] = client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        for raw_id, score in entries:
            body = client.hget(f"{key}.msgs", raw_id)
            if not isinstance(body, bytes):
                continue
            message = dramatiq.Message.decode(body)
            found.append(DeadLetter(queue, raw_id.decode(), message.actor_name, _order_of(message), int(score)))
    return sorted(found, key=lambda letter: letter.failed_at_ms)


def forget(client: redis.Redis, letter: DeadLetter, namespace: str = "orderflow") -> None:
    """Remove one dead letter (after it was re-driven, or on purge)."""
    key = f"{namespace}:{letter.queue}.XQ"
    client.zrem(key, letter.message_id)
    client.hdel(f"{key}.msgs", letter.message_id)


def _order_of(message: dramatiq.Message[object]) -> str | None:
    if message.actor_name == "saga_exhausted" and message.args:
        inner = message.args[0]
        return str(inner["args"][0]) if isinstance(inner, dict) and inner.get("args") else None
    return str(message.args[0]) if message.args else None

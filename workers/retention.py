"""The reaper's retention pass: old idempotency keys, Stripe event ids, order events and local records go.

Every RETENTION_INTERVAL_S the reaper runs each table's `Prune` (declared by the table's writer) in
batches of RETENTION_BATCH, one short transaction each, until a batch comes back short or MAX_BATCHES ran:
a backlog of old rows drains over a few passes instead of holding the reaper from its orders.
"""

from __future__ import annotations

import structlog

from models.db import transaction
from pipeline import metrics
from pipeline.config import Settings
from pipeline.local_providers import PRUNE_LOCAL_DELIVERIES
from pipeline.order_store import PRUNE_IDEMPOTENCY_KEYS, PRUNE_ORDER_EVENTS
from pipeline.payment_events import PRUNE_STRIPE_EVENTS
from pipeline.retention import Prune

log = structlog.get_logger("orderflow.retention")
PRUNES = (PRUNE_IDEMPOTENCY_KEYS, PRUNE_STRIPE_EVENTS, PRUNE_ORDER_EVENTS, PRUNE_LOCAL_DELIVERIES)
MAX_BATCHES = 20


def retention_pass(settings: Settings) -> dict[str, int]:
    """Prune every table whose age setting is above 0; rows deleted by table. Exports the retention gauges."""
    assert settings.database_url
    pruned = {}
    for prune in PRUNES:
        older_than_s = float(getattr(settings, prune.setting))
        metrics.RETENTION_TTL.labels(prune.table).set(older_than_s)
        if older_than_s > 0:
            pruned[prune.table] = _prune(settings.database_url, prune, older_than_s, settings.retention_batch)
        with transaction(settings.database_url) as connection:
            metrics.RETENTION_OLDEST_AGE.labels(prune.table).set(float(connection.scalar(prune.oldest_age_s) or 0))
    if any(pruned.values()):
        log.info("retention.pruned", **pruned)
    return pruned


def _prune(database_url: str, prune: Prune, older_than_s: float, batch: int) -> int:
    deleted = 0
    for _ in range(MAX_BATCHES):
        with transaction(database_url) as connection:
            found = connection.execute(prune.delete_batch, {"older_than_s": older_than_s, "batch": batch}).rowcount
        deleted += found
        metrics.RETENTION_PRUNED.labels(prune.table).inc(found)
        if found < batch:
            break
    return deleted

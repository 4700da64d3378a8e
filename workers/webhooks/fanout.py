"""The reaper's webhook pass: committed order events become deliveries, lost messages are sent again, gauges set.

Runs every sweep. The fan-out commits its deliveries and its cursor together and sends after the commit; a
send that fails leaves the delivery pending and due, so a later pass sends it (a lost message only delays).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from sqlalchemy import text

from models.db import transaction
from pipeline import metrics, webhook_store
from pipeline.config import Settings
from workers.enqueue import send_webhook

log = structlog.get_logger("orderflow.webhooks")
MAX_BATCHES = 20  # per pass: a backlog drains over a few sweeps instead of holding the reaper
REDRIVE_LIMIT = 500
OLDEST_UNDELIVERED = text("""
    SELECT COALESCE(extract(epoch FROM now() - min(ev.created_at)), 0)
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled
    JOIN order_events ev ON ev.id = d.event_id
    WHERE d.status = 'pending'""")
DISABLED = text("SELECT count(*) FROM webhook_endpoints WHERE NOT enabled")


@dataclass
class Pass:
    """What one pass did."""

    events: int = 0
    created: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)


def webhook_pass(settings: Settings) -> Pass:
    """Fan out what committed since the last pass, re-send lost deliveries, export the gauges."""
    assert settings.database_url
    done = Pass()
    for _ in range(MAX_BATCHES):
        with transaction(settings.database_url) as connection:
            read, created = webhook_store.fan_out(
                connection, settings.webhook_fanout_batch, settings.webhook_retry_for_s
            )
        done.events += read
        done.created += [str(delivery_id) for delivery_id in created]
        for delivery_id in created:
            send_webhook(delivery_id)
        if read < settings.webhook_fanout_batch:
            break
    with transaction(settings.database_url) as connection:
        redriven = webhook_store.redrive_due(connection, settings.webhook_redrive_after_s, REDRIVE_LIMIT)
    for delivery_id in redriven:
        send_webhook(delivery_id)
        done.redriven.append(str(delivery_id))
    if redriven:
        log.warning("webhook.redriven", deliveries=len(redriven))
    with transaction(settings.database_url) as connection:
        metrics.WEBHOOK_OLDEST_UNDELIVERED.set(float(connection.scalar(OLDEST_UNDELIVERED) or 0))
        metrics.WEBHOOK_ENDPOINTS_DISABLED.set(connection.scalar(DISABLED) or 0)
    return done

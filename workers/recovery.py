"""The reaper: re-drives live orders whose lease ran out (worker killed, message lost, API crashed).

Every step commits a fresh lease with its progress, so an order whose lease has expired has not
moved for a whole lease. Re-sending its due message is safe because every step is idempotent,
and an order whose step is running right now is skipped (its row is locked).
"""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import func, select, update

from models.db import unit_of_work
from models.orders import Order
from models.status import TERMINAL_STATUSES, OrderStatus
from pipeline import metrics, saga
from pipeline.config import get_settings
from workers.dispatch import send

log = structlog.get_logger("orderflow.reaper")


def sweep(database_url: str, lease_s: float, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
    """Extend the lease of every stalled live order and re-send its due message; returns what was sent."""
    stalled = (
        select(Order.id)
        .where(Order.status.not_in([status.value for status in TERMINAL_STATUSES]))
        .where(Order.lease_expires_at < func.now())
        .order_by(Order.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with unit_of_work(database_url) as session:
        rows = session.execute(
            update(Order)
            .where(Order.id.in_(stalled.scalar_subquery()))
            .values(lease_expires_at=func.now() + timedelta(seconds=lease_s), deliveries=Order.deliveries + 1)
            .returning(Order.id, Order.status, Order.current_step)
        ).all()
    redriven = []
    for order_id, status, current_step in rows:
        actor = current_step or saga.step_due(OrderStatus(status))
        if actor is None:
            continue
        send(actor, order_id)
        metrics.REDRIVEN.labels(actor).inc()
        log.warning("reaper.redrive", order_id=str(order_id), step=actor, status=status)
        redriven.append((order_id, actor))
    return redriven


def run_forever(stop: threading.Event) -> None:
    """Sweep every reaper_interval_s until `stop` is set; a failed sweep is logged and tried again."""
    settings = get_settings()
    assert settings.database_url, "DATABASE_URL must be set for the reaper"
    log.info("reaper.started", interval_s=settings.reaper_interval_s, lease_s=settings.step_lease_s)
    while not stop.wait(settings.reaper_interval_s):
        try:
            sweep(settings.database_url, settings.step_lease_s)
        except Exception as error:  # Postgres or Redis away for a while: keep sweeping, do not crash-loop
            log.warning("reaper.sweep_failed", error=str(error)[:300])


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(stop)


if __name__ == "__main__":
    main()

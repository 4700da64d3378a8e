"""The reaper: re-drives live orders that stopped moving, gives up on poison, and expires held stock.

Every step commits a fresh lease with its progress, so an order whose lease has expired has not
moved for a whole lease: its worker was killed, its message was lost with Redis, or the API died
between its commit and its enqueue. Re-sending its due message is safe because every step is
idempotent, and an order whose step is running right now is skipped (its row is locked).

An order whose message is merely waiting in a long queue is not stalled: while the oldest ready
message of its queue is older than the order's last progress, the reaper waits instead.

Each sweep also runs the shops' webhook pass (workers/webhooks/fanout.py), and every RETENTION_INTERVAL_S
the retention pass (workers/retention.py).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import start_http_server
from sqlalchemy import Select, exists, func, select

from models.db import transaction
from models.inventory import Reservation
from models.orders import Order
from models.status import OrderStatus, ReservationStatus
from pipeline import metrics, saga
from pipeline.config import Settings, get_settings
from pipeline.errors import RedeliveryLimit, ReservationExpired
from pipeline.logs import configure_logging
from pipeline.order_store import extend_leases
from pipeline.payment_events import refund_kept_money
from workers.backlog import backlog
from workers.broker import install, installed
from workers.enqueue import send
from workers.operator.views import open_counts
from workers.retention import retention_pass
from workers.saga.runner import fail, give_up
from workers.webhooks.fanout import webhook_pass

log = structlog.get_logger("orderflow.reaper")
LIVE = Order.terminal_status.is_(None)
EXPIRED_LEASE = (LIVE, Order.lease_expires_at < func.now())
# A re-drive that does not help doubles the next lease, up to this factor.
MAX_LEASE_FACTOR = 8


@dataclass(frozen=True)
class Policy:
    """How patient the reaper is."""

    lease_s: float = 20.0
    max_redeliveries: int = 5
    reservation_ttl_s: float = 900.0

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.step_lease_s, settings.max_redeliveries, settings.reservation_ttl_s)


@dataclass
class Sweep:
    """What one sweep did, by order id."""

    redriven: list[tuple[uuid.UUID, str]]
    poisoned: list[tuple[uuid.UUID, str]]
    expired: list[uuid.UUID]
    waiting: int = 0


def sweep(database_url: str, policy: Policy, limit: int = 500) -> Sweep:
    """One pass: re-send the due message of stalled orders, give up on poison, cancel expired reservations."""
    queue_ages = _queue_ages()
    result = Sweep([], [], [])
    with transaction(database_url) as connection:
        metrics.STALLED.set(connection.scalar(select(func.count()).where(*EXPIRED_LEASE)) or 0)
        stalled = connection.execute(_stalled(limit)).all()
        now = datetime.now(UTC)
        waiting = []
        for order_id, status, current_step, deliveries, last_progress in stalled:
            due = saga.next_action(OrderStatus(status), current_step, saga.Stalled())
            if not isinstance(due, saga.Send):
                continue  # compensating with no undo recorded: nothing to re-drive
            actor = due.actor
            if deliveries >= policy.max_redeliveries:
                result.poisoned.append((order_id, actor))
            elif now - timedelta(seconds=queue_ages.get(saga.queue_of(actor), 0.0)) < last_progress:
                waiting.append(order_id)  # its message is still queued behind older ones
            else:
                metrics.RECOVERY_SECONDS.observe((now - last_progress).total_seconds())
                result.redriven.append((order_id, actor))
        redriven = [order_id for order_id, _ in result.redriven]
        extend_leases(connection, waiting, policy.lease_s, MAX_LEASE_FACTOR, redrive=False)
        extend_leases(connection, redriven, policy.lease_s, MAX_LEASE_FACTOR, redrive=True)
        result.waiting = len(waiting)
        result.expired = list(connection.scalars(_expired_reservations(policy.reservation_ttl_s, limit)))
    _act_on(result, policy)
    return result


def _stalled(limit: int) -> Select[uuid.UUID, str, str | None, int, datetime]:
    """Live orders whose lease ran out, the longest expired first (and whose row is not locked by a step)."""
    return (
        select(Order.id, Order.status, Order.current_step, Order.deliveries, Order.updated_at)
        .where(*EXPIRED_LEASE)
        .order_by(Order.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def _expired_reservations(ttl_s: float, limit: int) -> Select[uuid.UUID]:
    """Reserved orders whose stock has been held longer than the TTL (and whose row is not locked by a step)."""
    held_too_long = exists().where(
        Reservation.order_id == Order.id,
        Reservation.status == ReservationStatus.HELD,
        Reservation.created_at < func.now() - timedelta(seconds=ttl_s),
    )
    return (
        select(Order.id)
        .where(LIVE, Order.status == OrderStatus.RESERVED, held_too_long)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Order)
    )


def _act_on(result: Sweep, policy: Policy) -> None:
    """After the sweep committed: send the re-drives, then fail the poisoned and expired orders."""
    for order_id, actor in result.redriven:
        send(actor, order_id)
        metrics.REDRIVEN.labels(actor).inc()
        log.warning("reaper.redrive", order_id=str(order_id), step=actor)
    for order_id, actor in result.poisoned:
        error = RedeliveryLimit(f"{actor} was re-driven {policy.max_redeliveries} times without progress")
        give_up(actor, str(order_id), error)
        metrics.POISONED.labels(actor).inc()
        log.error("reaper.poisoned", order_id=str(order_id), step=actor)
    for order_id in result.expired:
        # The charge step's own failure path (see saga.next_action): it re-checks the status under the row
        # lock, so an order that was charged meanwhile is left alone, and a charge whose answer was lost is refunded.
        fail(str(order_id), saga.ReservationExpired(), ReservationExpired("stock held past its TTL"))
        metrics.RESERVATIONS_EXPIRED.inc()
        log.warning("reaper.reservation_expired", order_id=str(order_id))


def _queue_ages() -> dict[str, float]:
    """Age in seconds of the oldest ready message per queue; empty when Redis cannot say (then nothing waits)."""
    try:
        return {queue: found.oldest_age_s or 0.0 for queue, found in backlog(installed().client).items()}
    except Exception as error:  # Redis away: the re-drives will fail and be tried at the next sweep
        log.warning("reaper.backlog_unknown", error=str(error)[:300])
        return {}


def refund_late_charges(database_url: str, lookback_s: float | None = None) -> list[uuid.UUID]:
    """Cancelled orders holding money (a late success whose webhook never came): run their refund again."""
    lookback_s = get_settings().kept_money_lookback_s if lookback_s is None else lookback_s
    with transaction(database_url) as connection:
        reopened = refund_kept_money(connection, lookback_s)
    for order_id in reopened:
        send("refund_payment", order_id)
        log.error("reaper.late_charge", order_id=str(order_id))
    return reopened


def count_by_status(database_url: str) -> None:
    """Export orders per open status (live, or needs_attention): read through indexes of those orders only, so it
    costs the same whatever the history holds; done every few sweeps, not every one."""
    for status, number in open_counts(database_url).items():
        metrics.ORDERS_IN_STATE.labels(status).set(number)


def run_forever(stop: threading.Event, settings: Settings) -> None:
    """Sweep every reaper_interval_s until `stop` is set; a failed sweep is logged and tried again."""
    assert settings.database_url, "DATABASE_URL must be set for the reaper"
    policy = Policy.of(settings)
    log.info("reaper.started", interval_s=settings.reaper_interval_s, policy=str(policy))
    sweeps, pruned_at = 0, float("-inf")  # the first retention pass runs at start
    while not stop.wait(settings.reaper_interval_s):
        try:
            if sweeps % 8 == 0:
                count_by_status(settings.database_url)
                refund_late_charges(settings.database_url)
            sweeps += 1
            sweep(settings.database_url, policy)
        except Exception as error:  # Postgres or Redis away for a while: keep sweeping, do not crash-loop
            log.warning("reaper.sweep_failed", error=str(error)[:300])
        try:
            webhook_pass(settings)  # shops' webhooks: fan the committed events out, re-send lost deliveries
        except Exception as error:  # same: a failed pass is tried again at the next sweep
            log.warning("reaper.webhook_pass_failed", error=str(error)[:300])
        if time.monotonic() - pruned_at >= settings.retention_interval_s:
            pruned_at = time.monotonic()
            try:
                retention_pass(settings)  # old idempotency keys, Stripe event ids, order events, local records
            except Exception as error:  # same: the next interval tries again
                log.warning("reaper.retention_failed", error=str(error)[:300])


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    install(settings)
    if settings.reaper_metrics_port:
        try:
            start_http_server(settings.reaper_metrics_port, addr=settings.metrics_host)
        except OSError as error:  # a taken port costs the metrics, not the recovery of orders
            log.error("reaper.metrics_unavailable", port=settings.reaper_metrics_port, error=str(error))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(stop, settings)


if __name__ == "__main__":
    main()

"""What the runner notes about each attempt: its metrics, its Dramatiq message, and a retry in the timeline."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage

from models.db import transaction
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import metrics
from pipeline.adapters import Adapters
from pipeline.errors import PipelineError
from pipeline.order_store import lease_until, lock_order, timeline_row, update_order

log = structlog.get_logger("orderflow.saga")


def record_retry(
    step: str, kind: StepKind, order_id: str, error: Exception, adapters: Adapters, backoff_s: float
) -> None:
    """Note the failed attempt, and stretch the lease over the coming backoff so the reaper waits for it."""
    code = error.code if isinstance(error, PipelineError) else type(error).__name__
    log.warning("saga.retrying", order_id=order_id, step=step, code=code, error=str(error)[:300])
    try:
        with transaction(adapters.database_url) as connection:
            order = lock_order(connection, order_id)
            details = {**message_info(), "error_code": code, "error_message": str(error)}
            note = timeline_row(step, kind, StepOutcome.RETRYING, datetime.now(UTC), **details)
            lease = lease_until(adapters.lease_s + backoff_s)
            update_order(connection, order, note, lease_expires_at=lease)
    except Exception as database_down:  # the retry itself must not fail on a bookkeeping write
        log.warning("saga.retry_not_recorded", order_id=order_id, step=step, error=str(database_down)[:300])


def message_info() -> dict[str, Any]:
    message = CurrentMessage.get_current_message()
    if message is None:
        return {}
    return {"attempt": message.options.get("retries", 0) + 1, "message_id": message.message_id}


def error_info(error: PipelineError) -> dict[str, Any]:
    return {**message_info(), "error_code": error.code, "error_message": error.message}


def observe(step: str, kind: StepKind, outcome: StepOutcome, clock: float, error: Exception | None = None) -> None:
    metrics.STEP_SECONDS.labels(step, kind.value, outcome.value).observe(time.perf_counter() - clock)
    if error is not None:
        code = error.code if isinstance(error, PipelineError) else type(error).__name__
        metrics.STEP_FAILURES.labels(step, kind.value, code).inc()


def finished(status: str, created_at: datetime | None) -> None:
    metrics.ORDERS_FINISHED.labels(status).inc()
    if status == OrderStatus.SHIPPED and created_at is not None:
        metrics.TIME_TO_SHIP.observe((datetime.now(UTC) - created_at).total_seconds())

"""Run one saga step or compensation for one order: lock, act, record, commit, then send what is next."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from dramatiq.middleware import CurrentMessage
from sqlalchemy import Connection

from models.db import transaction
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import metrics, saga
from pipeline.adapters import Adapters, process_adapters
from pipeline.config import get_settings
from pipeline.database_errors import database_bug
from pipeline.errors import PermanentError, PipelineError, ProviderUnauthorized, RetriesExhausted, ShipmentPickedUp
from pipeline.progress import (
    LockedOrder,
    advance,
    begin_compensation,
    lease_until,
    lock_order,
    record,
    timeline_row,
    update_order,
)
from pipeline.shipping_steps import record_shipped
from pipeline.steps import ACTIONS, COMPENSATIONS
from workers.dispatch import send

log = structlog.get_logger("orderflow.saga")


def run_action(step: str, order_id: str, adapters: Adapters | None = None) -> None:
    """Run a forward step; permanent failure starts compensation, anything else is retried by Dramatiq."""
    adapters = adapters or process_adapters()
    _attempt(step, StepKind.ACTION, order_id, adapters, _act, fail_permanently)


def _act(step: str, order_id: str, adapters: Adapters) -> tuple[StepOutcome, str | None]:
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        status = OrderStatus(order.status)
        if status != saga.status_before(step):
            # Redelivered, or overtaken by a cancel: resend the follow-up only if this step just finished.
            return StepOutcome.SKIPPED, saga.step_after(step) if status == saga.BY_NAME[step].done else None
        ACTIONS[step](connection, order, adapters)
        next_actor = saga.step_after(step)
        note = timeline_row(step, StepKind.ACTION, StepOutcome.SUCCEEDED, started, **_message_info())
        advance(connection, order, saga.BY_NAME[step].done, next_actor, adapters.lease_s, note)
        created_at = order.created_at
    if next_actor is None:
        _finished(OrderStatus.SHIPPED, created_at)
    return StepOutcome.SUCCEEDED, next_actor


def fail_permanently(step: str, order_id: str, error: PipelineError, adapters: Adapters | None = None) -> None:
    """Record the failure and start undoing the completed steps, newest first."""
    adapters = adapters or process_adapters()
    started = datetime.now(UTC)
    if isinstance(error, PermanentError) and error.parks:
        hold(step, order_id, error, adapters)
        return
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        if order.status != saga.status_before(step):
            return  # someone else moved the order on (a duplicate, or a cancel): nothing to start
        record(connection, order.id, step, StepKind.ACTION, StepOutcome.FAILED, started, **_error_info(error))
        plan = saga.compensation_plan(step)
        first = begin_compensation(connection, order, plan, error.code, error.message, adapters.lease_s)
        status = order.status
    metrics.COMPENSATIONS.labels(error.code).inc()
    log.warning("saga.compensating", order_id=order_id, step=step, reason=error.code, error=error.message)
    if first:
        send(first, order_id)
    else:
        _finished(status, None)


def hold(step: str, order_id: str, error: PipelineError, adapters: Adapters) -> None:
    """Park the order before `step` for an operator, undoing nothing (a disputed charge); `retry` resumes it."""
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        if order.status != saga.status_before(step):
            return
        note = timeline_row(step, StepKind.ACTION, StepOutcome.FAILED, started, **_error_info(error))
        last_error = f"{step}: {error.code}: {error.message}"[:1000]
        advance(connection, order, OrderStatus.NEEDS_ATTENTION, step, adapters.lease_s, note, last_error=last_error)
    metrics.HELD.labels(error.code).inc()
    _finished(OrderStatus.NEEDS_ATTENTION, None)
    log.error("saga.held", order_id=order_id, step=step, reason=error.code, error=error.message)


def run_compensation(undo: str, order_id: str, adapters: Adapters | None = None) -> None:
    """Run one undo step; when every undo is done the order is cancelled."""
    adapters = adapters or process_adapters()
    _attempt(undo, StepKind.COMPENSATION, order_id, adapters, _undo, needs_attention)


def _undo(undo: str, order_id: str, adapters: Adapters) -> tuple[StepOutcome, str | None]:
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        if order.status != OrderStatus.COMPENSATING or order.current_step != undo:
            return StepOutcome.SKIPPED, None
        try:
            undone = COMPENSATIONS[undo](connection, order, adapters)
        except ShipmentPickedUp as error:
            _shipped_after_all(connection, order, error, started, adapters.lease_s)
            return StepOutcome.FAILED, None
        outcome = StepOutcome.SUCCEEDED if undone else StepOutcome.SKIPPED
        note = timeline_row(undo, StepKind.COMPENSATION, outcome, started, **_message_info())
        next_undo = saga.undo_after(undo)
        if next_undo:
            lease = lease_until(adapters.lease_s)
            update_order(connection, order, note, current_step=next_undo, lease_expires_at=lease)
        else:
            advance(connection, order, OrderStatus.CANCELLED, None, adapters.lease_s, note)
    if next_undo is None:
        _finished(OrderStatus.CANCELLED, None)
    return outcome, next_undo


def _shipped_after_all(
    connection: Connection, order: LockedOrder, error: ShipmentPickedUp, started: datetime, lease_s: float
) -> None:
    """The parcel left before it could be voided: the order is shipped (and keeps its money), never refunded."""
    record_shipped(connection, order, error.details["shipment"])
    note = timeline_row("cancel_shipment", StepKind.COMPENSATION, StepOutcome.FAILED, started, **_error_info(error))
    why = f"cancel_shipment: {error.code}: shipped before the cancel ({order.cancel_reason}) could stop it"
    advance(connection, order, OrderStatus.SHIPPED, None, lease_s, note, cancel_reason=None, last_error=why)
    metrics.SHIPPED_DESPITE_CANCEL.inc()
    metrics.ORDERS_FINISHED.labels(OrderStatus.SHIPPED.value).inc()
    log.error("saga.shipped_despite_cancel", order_id=str(order.id), reason=why)


def needs_attention(undo: str, order_id: str, error: PipelineError, adapters: Adapters | None = None) -> None:
    """A compensation could not finish: park the order where operators and alerts see it."""
    adapters = adapters or process_adapters()
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        if order.status != OrderStatus.COMPENSATING or order.current_step != undo:
            return
        note = timeline_row(undo, StepKind.COMPENSATION, StepOutcome.FAILED, started, **_error_info(error))
        last_error = f"{undo}: {error.code}: {error.message}"[:1000]
        advance(connection, order, OrderStatus.NEEDS_ATTENTION, undo, adapters.lease_s, note, last_error=last_error)
    _finished(OrderStatus.NEEDS_ATTENTION, None)
    log.error("saga.needs_attention", order_id=order_id, step=undo, error=error.message)


def exhausted(actor: str, order_id: str, last_error: str) -> None:
    """Dramatiq gave up retrying `actor`."""
    give_up(actor, order_id, RetriesExhausted(f"{actor} kept failing: {last_error}"[:1000]))


def give_up(actor: str, order_id: str, error: PipelineError) -> None:
    """Stop trying `actor`: a step counts as failed for good, a compensation needs a person."""
    if actor in saga.BY_NAME:
        fail_permanently(actor, order_id, error)
    else:
        needs_attention(actor, order_id, error)


def _attempt(
    name: str,
    kind: StepKind,
    order_id: str,
    adapters: Adapters,
    body: Callable[[str, str, Adapters], tuple[StepOutcome, str | None]],
    on_permanent: Callable[[str, str, PipelineError, Adapters], None],
) -> None:
    """Time one attempt, then: send the follow-up, hand a permanent failure on, or note a retry and re-raise."""
    clock = time.perf_counter()
    try:
        outcome, follow_up = body(name, order_id, adapters)
    except PermanentError as error:
        _observe(name, kind, StepOutcome.FAILED, clock, error)
        on_permanent(name, order_id, error, adapters)
        return
    except ProviderUnauthorized as error:
        # Our credentials, not the order: wait long, outside Dramatiq's retry budget, so nobody's order is cancelled.
        _observe(name, kind, StepOutcome.RETRYING, clock, error)
        metrics.PROVIDER_AUTH_FAILURES.labels(name).inc()
        wait_s = get_settings().provider_auth_retry_s
        _record_retry(name, kind, order_id, error, adapters, wait_s)
        send(name, order_id, delay_ms=int(wait_s * 1000))
        return
    except Exception as error:
        bug = database_bug(error)
        if bug is not None:
            _observe(name, kind, StepOutcome.FAILED, clock, bug)
            log.error("saga.database_bug", order_id=order_id, step=name, error=str(error)[:2000], exc_info=error)
            on_permanent(name, order_id, bug, adapters)
            return
        _observe(name, kind, StepOutcome.RETRYING, clock, error)
        _record_retry(name, kind, order_id, error, adapters, get_settings().retry_of(name).max_backoff_ms / 1000)
        raise
    _observe(name, kind, outcome, clock)
    if follow_up:
        send(follow_up, order_id)


def _record_retry(
    step: str, kind: StepKind, order_id: str, error: Exception, adapters: Adapters, backoff_s: float
) -> None:
    """Note the failed attempt, and stretch the lease over the coming backoff so the reaper waits for it."""
    code = error.code if isinstance(error, PipelineError) else type(error).__name__
    log.warning("saga.retrying", order_id=order_id, step=step, code=code, error=str(error)[:300])
    try:
        with transaction(adapters.database_url) as connection:
            order = lock_order(connection, order_id)
            details = {**_message_info(), "error_code": code, "error_message": str(error)}
            note = timeline_row(step, kind, StepOutcome.RETRYING, datetime.now(UTC), **details)
            lease = lease_until(adapters.lease_s + backoff_s)
            update_order(connection, order, note, lease_expires_at=lease)
    except Exception as database_down:  # the retry itself must not fail on a bookkeeping write
        log.warning("saga.retry_not_recorded", order_id=order_id, step=step, error=str(database_down)[:300])


def _message_info() -> dict[str, Any]:
    message = CurrentMessage.get_current_message()
    if message is None:
        return {}
    return {"attempt": message.options.get("retries", 0) + 1, "message_id": message.message_id}


def _error_info(error: PipelineError) -> dict[str, Any]:
    return {**_message_info(), "error_code": error.code, "error_message": error.message}


def _observe(step: str, kind: StepKind, outcome: StepOutcome, clock: float, error: Exception | None = None) -> None:
    metrics.STEP_SECONDS.labels(step, kind.value, outcome.value).observe(time.perf_counter() - clock)
    if error is not None:
        code = error.code if isinstance(error, PipelineError) else type(error).__name__
        metrics.STEP_FAILURES.labels(step, kind.value, code).inc()


def _finished(status: str, created_at: datetime | None) -> None:
    metrics.ORDERS_FINISHED.labels(status).inc()
    if status == OrderStatus.SHIPPED and created_at is not None:
        metrics.TIME_TO_SHIP.observe((datetime.now(UTC) - created_at).total_seconds())

"""Run one saga step or compensation for one order: lock, act, record, commit, then send what is next."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeGuard

import structlog
from sqlalchemy import Connection

from models.db import savepoint, transaction
from models.status import OrderStatus, StepKind, StepOutcome
from pipeline import metrics, saga
from pipeline.adapters import Adapters, process_adapters
from pipeline.config import get_settings
from pipeline.database_errors import database_bug
from pipeline.errors import PermanentError, PipelineError, ProviderUnauthorized, RetriesExhausted, ShipmentPickedUp
from pipeline.order_store import (
    LockedOrder,
    advance,
    begin_compensation,
    lease_until,
    lock_order,
    park,
    record,
    timeline_row,
    update_order,
)
from pipeline.shipping_steps import record_shipped
from pipeline.steps import ACTIONS, COMPENSATIONS
from workers.enqueue import send
from workers.saga.step_records import error_info, finished, message_info, observe, record_retry

log = structlog.get_logger("orderflow.saga")


# How long a message's thread goes on with the order's next steps before it sends the next one as a message:
# well inside the actors' time limit (120 s), so a slow provider cannot make a chain run into it.
CHAIN_BUDGET_S = 30.0


def run_action(step: str, order_id: str, adapters: Adapters | None = None) -> None:
    """Run one forward step and send the next one as a message (operator tools, tests); see `run_actions`."""
    run_actions(step, order_id, adapters, budget_s=0)


def run_actions(step: str, order_id: str, adapters: Adapters | None = None, budget_s: float = CHAIN_BUDGET_S) -> None:
    """Run a forward step, then the order's next steps in this thread for as long as each succeeds at once.

    Permanent failure starts compensation; anything else raised by the message's own step is retried by Dramatiq.

    A message per step cost about a fifth of a worker's CPU per order (enqueue, fetch and ack on Redis, and the
    middleware around each), so the steps after the message's own run on without one. Each runs under the
    order's row lock and commits its move and lease before a step that starts a transaction of its own: a crash
    between them leaves the order leased to its next step, and the message, never acked, is delivered again and
    resends that step (a step the order has passed is skipped with a resend), or the reaper re-drives it.
    A step that joins (`saga.Step.joins`) runs in the transaction before it, behind a savepoint.
    A step that fails at once gets a message of its own, which retries it with its own policy; this message's
    own step is retried by Dramatiq as before.
    """
    adapters = adapters or process_adapters()
    chain = _Chain(time.monotonic() + budget_s)
    follow_up = _attempt(step, StepKind.ACTION, order_id, adapters, chain.act, fail_permanently)
    while follow_up is not None and follow_up in saga.BY_NAME and (chain.failed or chain.time_left()):
        follow_up = _run_on(follow_up, order_id, adapters, chain)
    _send(follow_up, order_id)


@dataclass
class _Chain:
    """One message's run of forward steps: until when it may go on, and a joined step's failure to handle."""

    deadline: float
    # A step that failed in the transaction of the step before it: rolled back to its savepoint, its failure is
    # handled after the commit as that step's own attempt (retried by its policy, or compensated).
    failed: tuple[str, Exception] | None = None

    def time_left(self) -> bool:
        return time.monotonic() < self.deadline

    def joining(self, decision: saga.Decision) -> TypeGuard[saga.Send]:
        """True when the step `decision` sends is to run in the transaction that sends it."""
        return isinstance(decision, saga.Send) and saga.joins(decision.actor) and not self.failed and self.time_left()

    def act(self, step: str, order_id: str, adapters: Adapters) -> tuple[StepOutcome, str | None]:
        if self.failed is not None and self.failed[0] == step:
            error, self.failed = self.failed[1], None
            raise error
        return _act(step, order_id, adapters, self)


def _run_on(step: str, order_id: str, adapters: Adapters, chain: _Chain) -> str | None:
    """One of the next steps, in this thread; if it fails at once it is sent as a message, retried by its policy."""
    if chain.failed is None:
        metrics.STEPS_HANDED_ON.labels(step, "inline").inc()
    try:
        return _attempt(step, StepKind.ACTION, order_id, adapters, chain.act, fail_permanently)
    except Exception:  # _attempt noted the retry (timeline, lease, metrics); this message is done, not failed
        # Its message is its retry: the failed try counts against the step's budget, as a first try would.
        send(step, order_id, delay_ms=get_settings().retry_of(step).min_backoff_ms, retried=1)
        metrics.STEPS_HANDED_ON.labels(step, "message").inc()
        return None


def _send(actor: str | None, order_id: str) -> None:
    if actor is None:
        return
    send(actor, order_id)
    if actor in saga.BY_NAME:
        metrics.STEPS_HANDED_ON.labels(actor, "message").inc()


def _act(step: str, order_id: str, adapters: Adapters, chain: _Chain | None = None) -> tuple[StepOutcome, str | None]:
    """The step in a transaction of its own, with the next steps that join it while `chain` has time left."""
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        decision = saga.next_action(OrderStatus(order.status), order.current_step, saga.StepSucceeded(step))
        if isinstance(decision, saga.Ignore):
            return StepOutcome.SKIPPED, decision.resend  # redelivered, or overtaken by a cancel
        decision = _step(connection, order, step, decision, started, adapters)
        while chain and chain.joining(decision):
            decision = _joined(connection, order, decision, adapters, chain)
        created_at = order.created_at
    if isinstance(decision, saga.Finish):
        finished(decision.status, created_at)
    return StepOutcome.SUCCEEDED, decision.actor if isinstance(decision, saga.Send) else None


def _step(
    connection: Connection,
    order: LockedOrder,
    step: str,
    decision: saga.Decision,
    started: datetime,
    adapters: Adapters,
) -> saga.Send | saga.Finish:
    """Act, then record the attempt, move the order and lease it to the next step, in the caller's transaction."""
    assert isinstance(decision, saga.Send | saga.Finish) and decision.status is not None
    ACTIONS[step](connection, order, adapters)
    next_actor = decision.actor if isinstance(decision, saga.Send) else None
    note = timeline_row(step, StepKind.ACTION, StepOutcome.SUCCEEDED, started, **message_info())
    advance(connection, order, decision.status, next_actor, adapters.lease_s, note)
    return decision


def _joined(
    connection: Connection, order: LockedOrder, due: saga.Send, adapters: Adapters, chain: _Chain
) -> saga.Send | saga.Finish:
    """Run the step `due` sends in this transaction; if it fails, undo its part and leave it to `chain`."""
    step, started, clock = due.actor, datetime.now(UTC), time.perf_counter()
    decision = saga.next_action(OrderStatus(order.status), order.current_step, saga.StepSucceeded(step))
    try:
        with savepoint(connection):
            decision = _step(connection, order, step, decision, started, adapters)
    except Exception as error:
        chain.failed = (step, error)
        return due  # committed as it stands; the runner handles the failure as the step's own attempt
    observe(step, StepKind.ACTION, StepOutcome.SUCCEEDED, clock)
    metrics.STEPS_HANDED_ON.labels(step, "joined").inc()
    return decision


def fail_permanently(step: str, order_id: str, error: PipelineError, adapters: Adapters | None = None) -> None:
    """Record the failure and start undoing the completed steps, newest first; a disputed charge is held instead."""
    fail(order_id, saga.StepFailed(step, parks=isinstance(error, PermanentError) and error.parks), error, adapters)


def run_compensation(undo: str, order_id: str, adapters: Adapters | None = None) -> None:
    """Run one undo step; when every undo is done the order is cancelled."""
    adapters = adapters or process_adapters()
    _send(_attempt(undo, StepKind.COMPENSATION, order_id, adapters, _undo, needs_attention), order_id)


def _undo(undo: str, order_id: str, adapters: Adapters) -> tuple[StepOutcome, str | None]:
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        decision = saga.next_action(OrderStatus(order.status), order.current_step, saga.UndoSucceeded(undo))
        if isinstance(decision, saga.Ignore):
            return StepOutcome.SKIPPED, None
        try:
            undone = COMPENSATIONS[undo](connection, order, adapters)
        except ShipmentPickedUp as error:
            _shipped_after_all(connection, order, error, started, adapters.lease_s)
            return StepOutcome.FAILED, None
        outcome = StepOutcome.SUCCEEDED if undone else StepOutcome.SKIPPED
        note = timeline_row(undo, StepKind.COMPENSATION, outcome, started, **message_info())
        if isinstance(decision, saga.Send):
            lease = lease_until(adapters.lease_s)
            update_order(connection, order, note, current_step=decision.actor, lease_expires_at=lease)
            return outcome, decision.actor
        assert isinstance(decision, saga.Finish)
        advance(connection, order, decision.status, None, adapters.lease_s, note)
    finished(decision.status, None)
    return outcome, None


def _shipped_after_all(
    connection: Connection, order: LockedOrder, error: ShipmentPickedUp, started: datetime, lease_s: float
) -> None:
    """The parcel left before it could be voided: the order is shipped (and keeps its money), never refunded."""
    record_shipped(connection, order, error.details["shipment"])
    note = timeline_row("cancel_shipment", StepKind.COMPENSATION, StepOutcome.FAILED, started, **error_info(error))
    why = f"cancel_shipment: {error.code}: shipped before the cancel ({order.cancel_reason}) could stop it"
    advance(connection, order, OrderStatus.SHIPPED, None, lease_s, note, cancel_reason=None, last_error=why)
    metrics.SHIPPED_DESPITE_CANCEL.inc()
    metrics.ORDERS_FINISHED.labels(OrderStatus.SHIPPED.value).inc()
    log.error("saga.shipped_despite_cancel", order_id=str(order.id), reason=why)


def needs_attention(
    undo: str, order_id: str, error: PipelineError, adapters: Adapters | None = None, traceback: str | None = None
) -> None:
    """A compensation could not finish: park the order where operators and alerts see it."""
    fail(order_id, saga.UndoFailed(undo), error, adapters, traceback)


def exhausted(actor: str, order_id: str, last_error: str, traceback: str | None = None) -> None:
    """Dramatiq gave up retrying `actor`; `traceback` is its last attempt's."""
    give_up(actor, order_id, RetriesExhausted(f"{actor} kept failing: {last_error}"[:1000]), traceback)


def give_up(actor: str, order_id: str, error: PipelineError, traceback: str | None = None) -> None:
    """Stop trying `actor`: a step counts as failed for good, a compensation needs a person."""
    fail(order_id, saga.GaveUp(actor), error, traceback=traceback)


def fail(
    order_id: str,
    event: saga.Event,
    error: PipelineError,
    adapters: Adapters | None = None,
    traceback: str | None = None,
) -> None:
    """Compensate or park the order as the saga answers `event`; nothing if someone moved the order on."""
    adapters = adapters or process_adapters()
    started = datetime.now(UTC)
    with transaction(adapters.database_url) as connection:
        order = lock_order(connection, order_id)
        decision = saga.next_action(OrderStatus(order.status), order.current_step, event)
        if isinstance(decision, saga.Park):
            kind = StepKind.ACTION if decision.held else StepKind.COMPENSATION
            park(
                connection,
                order,
                decision.actor,
                kind,
                started,
                adapters.lease_s,
                error_code=error.code,
                error_message=error.message,
                **message_info(),
            )
        elif isinstance(decision, saga.Compensate):
            if decision.failed:
                info = error_info(error)
                record(connection, order.id, decision.failed, StepKind.ACTION, StepOutcome.FAILED, started, **info)
            first = begin_compensation(connection, order, decision.plan, error.code, error.message, adapters.lease_s)
            status = order.status
        else:
            return  # a duplicate, or a cancel moved the order on: nothing to start
    if isinstance(decision, saga.Park):
        finished(OrderStatus.NEEDS_ATTENTION, None)
        _parked(decision, order_id, error, traceback)
        return
    metrics.COMPENSATIONS.labels(error.code).inc()
    log.warning("saga.compensating", order_id=order_id, step=decision.failed, reason=error.code, error=error.message)
    if first:
        send(first, order_id)
    else:
        finished(status, None)


def _parked(decision: saga.Park, order_id: str, error: PipelineError, traceback: str | None) -> None:
    if decision.held:
        metrics.HELD.labels(error.code).inc()
        log.error("saga.held", order_id=order_id, step=decision.actor, reason=error.code, error=error.message)
        return
    # The runbook sends operators here for the traceback: the exception being handled, if any (exc_info=True
    # adds nothing otherwise), or the last attempt's, which Dramatiq kept in the exhausted message.
    where: dict[str, object] = {"exception": traceback} if traceback else {"exc_info": True}
    log.error("saga.needs_attention", order_id=order_id, step=decision.actor, error=error.message, **where)


def _attempt(
    name: str,
    kind: StepKind,
    order_id: str,
    adapters: Adapters,
    body: Callable[[str, str, Adapters], tuple[StepOutcome, str | None]],
    on_permanent: Callable[[str, str, PipelineError, Adapters], None],
) -> str | None:
    """Time one attempt; returns what comes next, or hands a permanent failure on, or notes a retry and re-raises."""
    clock = time.perf_counter()
    try:
        outcome, follow_up = body(name, order_id, adapters)
    except PermanentError as error:
        observe(name, kind, StepOutcome.FAILED, clock, error)
        on_permanent(name, order_id, error, adapters)
        return None
    except ProviderUnauthorized as error:
        # Our credentials, not the order: wait long, outside Dramatiq's retry budget, so nobody's order is cancelled.
        observe(name, kind, StepOutcome.RETRYING, clock, error)
        metrics.PROVIDER_AUTH_FAILURES.labels(name).inc()
        wait_s = get_settings().provider_auth_retry_s
        record_retry(name, kind, order_id, error, adapters, wait_s)
        send(name, order_id, delay_ms=int(wait_s * 1000))
        return None
    except Exception as error:
        bug = database_bug(error)
        if bug is not None:
            observe(name, kind, StepOutcome.FAILED, clock, bug)
            log.error("saga.database_bug", order_id=order_id, step=name, error=str(error)[:2000], exc_info=error)
            on_permanent(name, order_id, bug, adapters)
            return None
        observe(name, kind, StepOutcome.RETRYING, clock, error)
        record_retry(name, kind, order_id, error, adapters, get_settings().retry_of(name).max_backoff_ms / 1000)
        raise
    observe(name, kind, outcome, clock)
    return follow_up

"""The checkout saga as data (the steps in order, what each one undoes with) and its one decision.

`next_action(status, current_step, event)` says what happens to an order when something happens to it:
a step or an undo ran or failed, the reaper found it stalled, its stock was held too long, an operator
retried it, someone asked to cancel it. The answer is Send, Compensate, Finish, Park, Ignore or Refuse.
The runner, the reaper, operator retry and cancel ask it under the order's row lock and do the I/O
themselves; none of them decides for itself. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from models.status import TERMINAL_STATUSES, OrderStatus


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a transient failure is retried before it counts as permanent."""

    max_retries: int = 6
    min_backoff_ms: int = 200
    max_backoff_ms: int = 5_000


@dataclass(frozen=True)
class Step:
    """One forward step: its actor, the status it leaves the order in, its undo, and its queue.

    A step that `joins` runs in the transaction of the step before it, when that ran in the same thread.
    """

    name: str
    done: OrderStatus
    undo: str | None
    queue: str
    retry: Retry = Retry()
    joins: bool = False


# Payment providers have longer outages than our own database; compensations must not give up early.
PROVIDER_RETRY = Retry(max_retries=8, min_backoff_ms=500, max_backoff_ms=15_000)
COMPENSATION_RETRY = Retry(max_retries=10, min_backoff_ms=500, max_backoff_ms=30_000)

STEPS: tuple[Step, ...] = (
    Step("reserve_stock", done=OrderStatus.RESERVED, undo="release_stock", queue="stock"),
    Step("charge_payment", done=OrderStatus.PAID, undo="refund_payment", queue="payments", retry=PROVIDER_RETRY),
    # Confirm and notify join the charge's transaction: it holds no row another order needs (the stock is
    # committed before the charge), and the e-mail goes last, so a crash before the commit resends it no more
    # often than a crash in a transaction of its own would. The shipment then starts a transaction of its own,
    # because SMTP has no idempotency key: a crash in the carrier call must not send the e-mail again.
    Step("confirm", done=OrderStatus.CONFIRMED, undo="unconfirm", queue="orders", joins=True),
    Step(
        "notify",
        done=OrderStatus.NOTIFIED,
        undo="send_cancellation",
        queue="fulfilment",
        retry=PROVIDER_RETRY,
        joins=True,
    ),
    # Voiding works only until the carrier picks the parcel up; after that the order is shipped, never refunded.
    Step("ship", done=OrderStatus.SHIPPED, undo="cancel_shipment", queue="fulfilment", retry=PROVIDER_RETRY),
)
BY_NAME = {step.name: step for step in STEPS}
UNDO_QUEUES = {step.undo: step.queue for step in STEPS if step.undo}
# Compensations run newest first.
UNDO_ORDER: tuple[str, ...] = tuple(step.undo for step in reversed(STEPS) if step.undo)
FIRST_STEP = STEPS[0].name
# The queues the saga's actions and compensations use: what a saga worker consumes.
SAGA_QUEUES: tuple[str, ...] = tuple(sorted({step.queue for step in STEPS} | set(UNDO_QUEUES.values())))
# Not a step's: the queue of the shops' webhooks (workers/webhooks/), consumed by workers of its own, so a slow
# or dead shop endpoint holds webhook threads, never a saga worker's.
WEBHOOK_QUEUE = "webhooks"


def retry_of(actor: str) -> Retry:
    """The table's retry policy of an action or compensation."""
    return BY_NAME[actor].retry if actor in BY_NAME else COMPENSATION_RETRY


def joins(actor: str | None) -> bool:
    """True for a forward step that runs in the transaction of the step before it (see `Step`)."""
    return actor in BY_NAME and BY_NAME[actor].joins


def queue_of(actor: str) -> str:
    """The queue an action or compensation is sent to."""
    return BY_NAME[actor].queue if actor in BY_NAME else UNDO_QUEUES[actor]


def step_after(name: str) -> str | None:
    """The step that follows `name`, or None after the last one."""
    index = STEPS.index(BY_NAME[name])
    return STEPS[index + 1].name if index + 1 < len(STEPS) else None


def status_before(name: str) -> OrderStatus:
    """The status an order must be in for `name` to run."""
    index = STEPS.index(BY_NAME[name])
    return STEPS[index - 1].done if index else OrderStatus.PENDING


def step_due(status: OrderStatus) -> str | None:
    """The forward step an order in `status` waits for, if any."""
    for step in STEPS:
        if status_before(step.name) == status:
            return step.name
    return None


# The statuses an order passes through on the way forward: pending, then each step's `done`.
PROGRESS: tuple[OrderStatus, ...] = (OrderStatus.PENDING, *(step.done for step in STEPS))


def already_done(name: str, status: OrderStatus) -> bool:
    """True when an order in `status` has completed step `name` (a redelivered message)."""
    return status in PROGRESS and PROGRESS.index(status) > PROGRESS.index(status_before(name))


def compensation_plan(failed: str) -> tuple[str, ...]:
    """Undo steps to run, newest first, when step `failed` fails for good.

    The failed step's own undo is included: its effect may exist even though it failed
    (a charge whose answer was lost); every undo is a no-op when there is nothing to undo.
    """
    index = STEPS.index(BY_NAME[failed])
    return tuple(step.undo for step in reversed(STEPS[: index + 1]) if step.undo)


def plan_for_cancel(status: OrderStatus) -> tuple[str, ...]:
    """Undo steps for an operator or customer cancel of an order in `status`."""
    due = step_due(status)
    return compensation_plan(due) if due else ()


def undo_after(name: str) -> str | None:
    """The compensation that follows `name` (plans are always a suffix of UNDO_ORDER)."""
    index = UNDO_ORDER.index(name)
    return UNDO_ORDER[index + 1] if index + 1 < len(UNDO_ORDER) else None


# What happens to an order. The runner asks about a step or an undo before it acts, under the row lock, so a
# redelivered message does nothing and the answer still holds once the work is done.


@dataclass(frozen=True)
class StepSucceeded:
    """Forward step `step` ran (or is about to, under the lock)."""

    step: str


@dataclass(frozen=True)
class StepFailed:
    """Step `step` failed for good; `parks` when a person decides instead (a disputed charge)."""

    step: str
    parks: bool = False


@dataclass(frozen=True)
class UndoSucceeded:
    """Compensation `undo` ran (or is about to, under the lock)."""

    undo: str


@dataclass(frozen=True)
class UndoFailed:
    """Compensation `undo` cannot finish."""

    undo: str


@dataclass(frozen=True)
class GaveUp:
    """Retries or re-drives of `actor` ran out: a step has failed for good, an undo needs a person."""

    actor: str


@dataclass(frozen=True)
class Stalled:
    """The reaper found the order's lease expired: whatever is due goes again."""


@dataclass(frozen=True)
class ReservationExpired:
    """The order's stock has been held past its TTL."""


@dataclass(frozen=True)
class OperatorRetry:
    """An operator re-drives the order; `charged_without_ledger`: charge attempts but no payment row."""

    charged_without_ledger: bool = False


@dataclass(frozen=True)
class CancelRequested:
    """A customer asks to cancel the order, or with `operator` orderctl's compensate does."""

    operator: bool = False


Event = (
    StepSucceeded
    | StepFailed
    | UndoSucceeded
    | UndoFailed
    | GaveUp
    | Stalled
    | ReservationExpired
    | OperatorRetry
    | CancelRequested
)


@dataclass(frozen=True)
class Send:
    """Move the order to `status` (None: it stays) with `actor` due and a fresh lease, commit, then send `actor`."""

    actor: str
    status: OrderStatus | None = None


@dataclass(frozen=True)
class Compensate:
    """Start undoing, newest first: compensating at plan[0] (an empty plan cancels at once); note `failed` failed."""

    plan: tuple[str, ...]
    failed: str | None = None


@dataclass(frozen=True)
class Finish:
    """The order ends in `status`; nothing is sent."""

    status: OrderStatus


@dataclass(frozen=True)
class Park:
    """Move the order to needs_attention at `actor`; `held`: a forward step waits for a person, nothing undone."""

    actor: str
    held: bool = False


@dataclass(frozen=True)
class Ignore:
    """Stale, duplicate or nothing to do: change nothing, but send `resend` again if it names a lost follow-up."""

    reason: str
    resend: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Not allowed for an order in this status: change nothing and say why."""

    reason: str


Decision = Send | Compensate | Finish | Park | Ignore | Refuse


def next_action(status: OrderStatus, current_step: str | None, event: Event) -> Decision:
    """What happens next to an order in `status`, leased to `current_step`, when `event` happens to it."""
    match event:
        case StepSucceeded(step):
            if status != status_before(step):
                # Redelivered, or overtaken by a cancel: the follow-up goes again only if this step just finished.
                resend = step_after(step) if status == BY_NAME[step].done else None
                return Ignore(f"{step} is not due in {status}", resend)
            after, done = step_after(step), BY_NAME[step].done
            return Send(after, done) if after else Finish(done)
        case StepFailed(step, parks):
            if status != status_before(step):
                return Ignore(f"{step} is not due in {status}")  # a duplicate, or a cancel moved the order on
            return Park(step, held=True) if parks else Compensate(compensation_plan(step), failed=step)
        case UndoSucceeded(undo):
            if status != OrderStatus.COMPENSATING or current_step != undo:
                return Ignore(f"{undo} is not due")
            after = undo_after(undo)
            return Send(after) if after else Finish(OrderStatus.CANCELLED)
        case UndoFailed(undo):
            if status != OrderStatus.COMPENSATING or current_step != undo:
                return Ignore(f"{undo} is not due")
            return Park(undo)
        case GaveUp(actor):
            return next_action(status, current_step, StepFailed(actor) if actor in BY_NAME else UndoFailed(actor))
        case Stalled():
            due = None if status in TERMINAL_STATUSES else current_step or step_due(status)
            return Send(due) if due else Ignore(f"nothing is due in {status}")
        case ReservationExpired():
            # The charge step's own failure path: only while the charge is due, and its undo is in the plan,
            # so a charge whose answer was lost is refunded.
            return next_action(status, current_step, StepFailed("charge_payment"))
        case OperatorRetry(charged_without_ledger):
            return _retry(status, current_step, charged_without_ledger)
        case CancelRequested(operator):
            return _cancel(status, operator)
    assert_never(event)


def _retry(status: OrderStatus, current_step: str | None, charged_without_ledger: bool) -> Decision:
    if status == OrderStatus.NEEDS_ATTENTION:
        # A held order resumes before the step that held it. A parked compensation runs again, and with none
        # recorded they all do: every undo is a no-op when there is nothing to undo.
        actor = current_step or UNDO_ORDER[0]
        return Send(actor, status_before(actor) if actor in BY_NAME else OrderStatus.COMPENSATING)
    if status in TERMINAL_STATUSES:
        return Refuse(f"order is {status}: nothing to re-drive")
    due = current_step or step_due(status)
    if due is None:
        return Refuse(f"no step is due in status {status}")
    if due == "charge_payment" and charged_without_ledger:
        return Refuse("earlier charge_payment attempts but no payment record: re-charging could double charge")
    return Send(due)


def _cancel(status: OrderStatus, operator: bool) -> Decision:
    if status == OrderStatus.SHIPPED:
        return Refuse("order has shipped and cannot be cancelled")
    if status == OrderStatus.NEEDS_ATTENTION and operator:
        return Refuse("needs attention: `retry` re-runs its failed compensation")
    if status in (OrderStatus.COMPENSATING, OrderStatus.CANCELLED, OrderStatus.NEEDS_ATTENTION):
        return Ignore(f"already {status}")
    return Compensate(plan_for_cancel(status))

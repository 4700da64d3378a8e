"""The checkout saga as data: the steps in order, what each one undoes with, and what comes next.

Pure: no I/O. The workers ask these functions what to do; they never decide it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.status import OrderStatus


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a transient failure is retried before it counts as permanent."""

    max_retries: int = 6
    min_backoff_ms: int = 200
    max_backoff_ms: int = 5_000


@dataclass(frozen=True)
class Step:
    """One forward step: its actor, the status it leaves the order in, its undo, and its queue."""

    name: str
    done: OrderStatus
    undo: str | None
    queue: str
    retry: Retry = Retry()


# Payment providers have longer outages than our own database; compensations must not give up early.
PROVIDER_RETRY = Retry(max_retries=8, min_backoff_ms=500, max_backoff_ms=15_000)
COMPENSATION_RETRY = Retry(max_retries=10, min_backoff_ms=500, max_backoff_ms=30_000)

STEPS: tuple[Step, ...] = (
    Step("reserve_stock", done=OrderStatus.RESERVED, undo="release_stock", queue="stock"),
    Step("charge_payment", done=OrderStatus.PAID, undo="refund_payment", queue="payments", retry=PROVIDER_RETRY),
    Step("confirm", done=OrderStatus.CONFIRMED, undo="unconfirm", queue="orders"),
    Step("notify", done=OrderStatus.NOTIFIED, undo="send_cancellation", queue="fulfilment", retry=PROVIDER_RETRY),
    # Voiding works only until the carrier picks the parcel up; after that the order is shipped, never refunded.
    Step("ship", done=OrderStatus.SHIPPED, undo="cancel_shipment", queue="fulfilment", retry=PROVIDER_RETRY),
)
BY_NAME = {step.name: step for step in STEPS}
UNDO_QUEUES = {step.undo: step.queue for step in STEPS if step.undo}
# Compensations run newest first.
UNDO_ORDER: tuple[str, ...] = tuple(step.undo for step in reversed(STEPS) if step.undo)
FIRST_STEP = STEPS[0].name


def retry_of(actor: str) -> Retry:
    """The table's retry policy of an action or compensation."""
    return BY_NAME[actor].retry if actor in BY_NAME else COMPENSATION_RETRY


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

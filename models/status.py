"""The vocabularies stored in the database; plain enums so the pure saga code can use them too."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order stands in the checkout saga."""

    PENDING = "pending"
    RESERVED = "reserved"
    PAID = "paid"
    CONFIRMED = "confirmed"
    NOTIFIED = "notified"
    SHIPPED = "shipped"
    COMPENSATING = "compensating"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"


TERMINAL_STATUSES = frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED, OrderStatus.NEEDS_ATTENTION})
# The same as stored in orders.status, in the enum's order: for SQL parameters and table columns.
TERMINAL_VALUES: tuple[str, ...] = tuple(status.value for status in OrderStatus if status in TERMINAL_STATUSES)
# ... and as a SQL list, for `status NOT IN {TERMINAL_SQL}` in queries and partial indexes.
TERMINAL_SQL = "(" + ", ".join(f"'{value}'" for value in TERMINAL_VALUES) + ")"


class ReservationStatus(StrEnum):
    """What became of stock held for one order line."""

    HELD = "held"
    RELEASED = "released"
    SHIPPED = "shipped"


class PaymentStatus(StrEnum):
    """The charge as we know it.

    `in_doubt`: the provider's answer never reached us; `pending`: the provider holds the intent in a
    non-final state (`processing`) that a webhook or a later look settles.
    """

    STARTED = "started"
    IN_DOUBT = "in_doubt"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


class RefundStatus(StrEnum):
    """A refund as the provider reports it; only `succeeded` means the money went back."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class RefundOrigin(StrEnum):
    """Who asked for a refund: the saga's compensation, or someone outside it (the dashboard, support)."""

    SAGA = "saga"
    OUTSIDE = "outside"


class StepKind(StrEnum):
    """Whether a timeline entry moved the saga forward, undid a step, or was an operator's action."""

    ACTION = "action"
    COMPENSATION = "compensation"
    OPERATOR = "operator"


class StepOutcome(StrEnum):
    """How one attempt of one step ended."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    SKIPPED = "skipped"


class NotificationKind(StrEnum):
    """The customer messages an order can send, each at most once."""

    CONFIRMATION = "confirmation"
    CANCELLATION = "cancellation"


def sql_in(enum: type[StrEnum]) -> str:
    """A CHECK constraint body that admits exactly the enum's values."""
    return "IN (" + ", ".join(f"'{member.value}'" for member in enum) + ")"

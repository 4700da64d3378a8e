"""The order state machine: which status may follow which. Pure: no I/O."""

from __future__ import annotations

from models.status import TERMINAL_STATUSES, OrderStatus
from pipeline.errors import IllegalTransition
from pipeline.saga import PROGRESS

S = OrderStatus
# Each status's successor on the way forward, from the saga's table of steps.
_FORWARD = dict(zip(PROGRESS, PROGRESS[1:], strict=False))

# A charged order is held for an operator (a dispute) from any of these, and resumed into them.
_HOLDABLE = frozenset({S.PAID, S.CONFIRMED, S.NOTIFIED})

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    **{status: frozenset({after, S.COMPENSATING}) for status, after in _FORWARD.items()},
    **{status: frozenset({_FORWARD[status], S.COMPENSATING, S.NEEDS_ATTENTION}) for status in _HOLDABLE},
    # A parcel the carrier picked up before it could be voided: the order has shipped after all.
    S.COMPENSATING: frozenset({S.CANCELLED, S.NEEDS_ATTENTION, S.SHIPPED}),
    # An operator retries the compensation of a parked order, or resumes one that was held.
    S.NEEDS_ATTENTION: frozenset({S.COMPENSATING, *_HOLDABLE}),
    S.SHIPPED: frozenset(),
    # Money the provider took after the cancel (a late success) is refunded through the compensation again;
    # a refund that fails after the cancel needs a person.
    S.CANCELLED: frozenset({S.COMPENSATING, S.NEEDS_ATTENTION}),
}


def check_transition(current: OrderStatus | str, new: OrderStatus | str) -> OrderStatus:
    """Return `new` as a status if the machine allows current -> new; raise IllegalTransition otherwise."""
    before, after = OrderStatus(current), OrderStatus(new)
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"an order cannot go from {before} to {after}", current=before, new=after)
    return after


def is_terminal(status: OrderStatus | str) -> bool:
    """Shipped, cancelled or needs_attention: nothing moves the order unless the provider or a person does."""
    return OrderStatus(status) in TERMINAL_STATUSES

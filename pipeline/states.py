"""The order state machine: which status may follow which. Pure: no I/O."""

from __future__ import annotations

from models.status import OrderStatus
from pipeline.errors import IllegalTransition

S = OrderStatus
_FORWARD = {
    S.PENDING: S.RESERVED,
    S.RESERVED: S.PAID,
    S.PAID: S.CONFIRMED,
    S.CONFIRMED: S.NOTIFIED,
    S.NOTIFIED: S.SHIPPED,
}

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    **{status: frozenset({after, S.COMPENSATING}) for status, after in _FORWARD.items()},
    S.COMPENSATING: frozenset({S.CANCELLED, S.NEEDS_ATTENTION}),
    # An operator may retry the compensation of an order that needed attention.
    S.NEEDS_ATTENTION: frozenset({S.COMPENSATING}),
    S.SHIPPED: frozenset(),
    S.CANCELLED: frozenset(),
}


def check_transition(current: OrderStatus | str, new: OrderStatus | str) -> OrderStatus:
    """Return `new` as a status if the machine allows current -> new; raise IllegalTransition otherwise."""
    before, after = OrderStatus(current), OrderStatus(new)
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"an order cannot go from {before} to {after}", current=before, new=after)
    return after


def is_terminal(status: OrderStatus | str) -> bool:
    return not TRANSITIONS[OrderStatus(status)] or OrderStatus(status) == S.NEEDS_ATTENTION

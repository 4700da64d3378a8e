"""One actor per forward step of the checkout saga; each goes on with the steps after it (`run_actions`)."""

from __future__ import annotations

from workers.saga.actors import saga_actor
from workers.saga.runner import run_actions


@saga_actor("reserve_stock")
def reserve_stock(order_id: str) -> None:
    """Hold stock for every line of the order, or fail the order as out of stock."""
    run_actions("reserve_stock", order_id)


@saga_actor("charge_payment")
def charge_payment(order_id: str) -> None:
    """Charge the order total through the payment provider, at most once."""
    run_actions("charge_payment", order_id)


@saga_actor("confirm")
def confirm(order_id: str) -> None:
    """Mark the order confirmed once its totals check out."""
    run_actions("confirm", order_id)


@saga_actor("notify")
def notify(order_id: str) -> None:
    """Send the customer the order confirmation."""
    run_actions("notify", order_id)


@saga_actor("ship")
def ship(order_id: str) -> None:
    """Hand the order to the carrier; shipped is terminal."""
    run_actions("ship", order_id)

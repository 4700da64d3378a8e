"""One actor per compensation, and the actor that takes over when Dramatiq gives up retrying."""

from __future__ import annotations

from typing import Any

import dramatiq

from workers.broker import installed
from workers.saga.actors import saga_actor
from workers.saga.runner import exhausted, run_compensation


@saga_actor("release_stock")
def release_stock(order_id: str) -> None:
    """Put the order's held stock back on the shelf."""
    run_compensation("release_stock", order_id)


@saga_actor("refund_payment")
def refund_payment(order_id: str) -> None:
    """Refund the order's charge, reconciling an in-doubt charge first."""
    run_compensation("refund_payment", order_id)


@saga_actor("unconfirm")
def unconfirm(order_id: str) -> None:
    """Withdraw the confirmation (state only)."""
    run_compensation("unconfirm", order_id)


@saga_actor("send_cancellation")
def send_cancellation(order_id: str) -> None:
    """Tell a customer who had a confirmation that the order is cancelled."""
    run_compensation("send_cancellation", order_id)


@saga_actor("cancel_shipment")
def cancel_shipment(order_id: str) -> None:
    """Void the order's shipment at the carrier while it has not been picked up."""
    run_compensation("cancel_shipment", order_id)


@dramatiq.actor(broker=installed(), queue_name="orders", max_retries=20, min_backoff=1_000, max_backoff=60_000)
def saga_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    """A step or compensation ran out of retries: fail it permanently (or park the order)."""
    traceback = (message.get("options", {}).get("traceback") or "").strip()
    last_error = traceback.splitlines()[-1:] or ["unknown"]
    exhausted(message["actor_name"], message["args"][0], last_error[0], traceback or None)

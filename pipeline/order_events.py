"""Order events: which change of an order is which event, what an event says, and reading them in safe order.

The events themselves are written by `pipeline.order_store` (the orders' one writer) in the transaction
that changes the order. Readers (the feed, the webhook fan-out) take them in (transaction_id, id) order
and only below the oldest transaction still running, so an event that commits late is never skipped.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, text

from models.schemas import EventOrder, ShipmentOut
from models.status import OrderStatus

if TYPE_CHECKING:
    from pipeline.order_store import LockedOrder

OF_STATUS: dict[OrderStatus, str] = {
    OrderStatus.PENDING: "order.accepted",
    OrderStatus.RESERVED: "order.reserved",
    OrderStatus.PAID: "order.paid",
    OrderStatus.CONFIRMED: "order.confirmed",
    OrderStatus.NOTIFIED: "order.notified",
    OrderStatus.SHIPPED: "order.shipped",
    OrderStatus.COMPENSATING: "order.cancelling",
    OrderStatus.CANCELLED: "order.cancelled",
    OrderStatus.NEEDS_ATTENTION: "order.needs_attention",
}
# Money moving outside the saga: a refund made in the provider's dashboard, a dispute opened by the bank.
REFUNDED, DISPUTED = "order.refunded", "order.disputed"
EVENT_TYPES: tuple[str, ...] = (*OF_STATUS.values(), REFUNDED, DISPUTED)


def order_document(order: LockedOrder, shipment: ShipmentOut | None = None) -> dict[str, Any]:
    """The locked order as an event shows it (the API's order, plus where it stands)."""
    fields = EventOrder.fields_of(order) | {"updated_at": order.updated_at, "cancel_reason": order.cancel_reason}
    document = EventOrder(**fields, shipment=shipment)
    return document.model_dump(mode="json")


def envelope(event_id: uuid.UUID, event_type: str, at: datetime, order: dict[str, Any]) -> dict[str, Any]:
    """The event's body without its sequence (the writer adds it from the order's previous events)."""
    created = at.isoformat().replace("+00:00", "Z")  # as the API writes times (pydantic's UTC form)
    return {"id": str(event_id), "type": event_type, "createdAt": created, "data": {"order": order}}


_COMMITTED_AFTER = text("""
    SELECT transaction_id::text::bigint AS transaction_id, id, order_id, client_id, sequence, type, payload, created_at
    FROM order_events
    WHERE (CAST(:client_id AS text) IS NULL OR client_id = :client_id)
      AND (transaction_id, id) > (CAST(:after_transaction AS text)::xid8, CAST(:after_id AS uuid))
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, id
    LIMIT :limit""")
_START = (0, uuid.UUID(int=0))


def committed_after(
    connection: Connection, *, client_id: str | None, after: tuple[int, uuid.UUID] | None, limit: int
) -> list[Row[Any]]:
    """Events after position `after` (None: from the start), oldest first, of one client (None: of all).

    Only events below the oldest running transaction: one still running may commit an event numbered
    before those already visible, and a reader that moved past it would never see it.
    """
    after_transaction, after_id = after or _START
    parameters = {"client_id": client_id, "after_transaction": str(after_transaction), "after_id": after_id}
    return list(connection.execute(_COMMITTED_AFTER, {**parameters, "limit": limit}).all())

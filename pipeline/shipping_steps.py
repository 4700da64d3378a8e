"""The saga's shipping step and its undo: the carrier's records, looked up by key, decide what exists.

A shipment whose answer was lost is found by its idempotency key before it counts as failed; its undo
voids it at the carrier while the carrier still allows that (before pickup). A parcel already picked
up cannot come back: the order is then shipped, never refunded (see workers.saga.runner).
"""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert

from models.db import run
from models.schemas import ShipmentOut
from models.status import ReservationStatus
from models.tables import SHIPMENTS
from pipeline import ledger
from pipeline.adapters import Adapters
from pipeline.carrier import Shipment
from pipeline.errors import ShipmentInDoubt, ShipmentPickedUp
from pipeline.order_store import LockedOrder
from pipeline.stock import settle_held

CARRIER = "localcarrier"
_SHIPMENT = insert(SHIPMENTS).on_conflict_do_nothing()


def shipment_key(order: LockedOrder) -> str:
    return f"{order.id}:ship"


def ship(connection: Connection, order: LockedOrder, adapters: Adapters) -> None:
    """Create the shipment once (the carrier dedupes by key), unless the money went back meanwhile."""
    ledger.money_still_held(connection, order)
    items = [{"productId": str(line.product_id), "quantity": line.quantity} for line in order.lines]
    key = shipment_key(order)
    try:
        shipment = adapters.carrier.create_shipment(
            order_id=order.id, address=order.shipping_address, items=items, idempotency_key=key
        )
    except ShipmentInDoubt:
        found = adapters.carrier.find_shipment(key)
        if found is None:
            raise  # not there: the retry creates it, under the same key
        shipment = found
    record_shipped(connection, order, shipment)


def cancel_shipment(connection: Connection, order: LockedOrder, adapters: Adapters) -> bool:
    """Void the order's shipment at the carrier if it has one; ShipmentPickedUp once the parcel has left."""
    found = adapters.carrier.find_shipment(shipment_key(order))
    if found is None or found.status == "cancelled":
        return False
    if found.status != "picked_up":
        try:
            adapters.carrier.cancel_shipment(found.shipment_id, idempotency_key=f"{order.id}:cancel_shipment")
            return True
        except ShipmentPickedUp:
            pass  # picked up between our look and the void
    raise ShipmentPickedUp("the carrier has picked the parcel up: it cannot be voided", shipment=found)


def record_shipped(connection: Connection, order: LockedOrder, shipment: Shipment) -> None:
    """Record the carrier's shipment and move the held stock to shipped."""
    order.shipment = ShipmentOut(carrier=CARRIER, tracking_number=shipment.tracking_number)
    run(
        connection,
        _SHIPMENT,
        {
            "order_id": order.id,
            "carrier": CARRIER,
            "tracking_number": shipment.tracking_number,
            "carrier_shipment_id": shipment.shipment_id,
        },
    )
    settle_held(connection, order, ReservationStatus.SHIPPED)

"""Shipping: a carrier protocol and the local implementation, which refuses undeliverable addresses."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from pipeline.errors import InvalidAddress
from pipeline.local_providers import LocalRecorder

# Where the local carrier delivers; anything else is refused, as a real carrier would.
SERVED_COUNTRIES = frozenset({"US", "CA", "GB", "DE", "FR", "NL", "NO", "SE"})


class Shipper(Protocol):
    """Creates a shipment; the same idempotency key never ships twice."""

    def create_shipment(
        self, *, order_id: uuid.UUID, address: dict[str, Any], items: list[dict[str, Any]], idempotency_key: str
    ) -> str: ...


class LocalShipper:
    """Records shipments in local_deliveries; refuses countries it does not serve and blank streets."""

    def __init__(self, recorder: LocalRecorder) -> None:
        self.recorder = recorder

    def create_shipment(
        self, *, order_id: uuid.UUID, address: dict[str, Any], items: list[dict[str, Any]], idempotency_key: str
    ) -> str:
        country = str(address.get("country", "")).upper()
        if country not in SERVED_COUNTRIES or not str(address.get("street", "")).strip():
            raise InvalidAddress(f"the carrier does not deliver to {country or 'an address without a country'}")
        return self.recorder.deliver(order_id, idempotency_key, {"address": address, "items": items})

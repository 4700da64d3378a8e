"""The carrier's wire formats: ids, timestamps, error bodies, request validation, shipment objects."""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]
Reply = tuple[int, Json]

# Where the carrier delivers; any other country is refused with 422 address_rejected.
SERVED_COUNTRIES = frozenset({"US", "CA", "GB", "DE", "FR", "NL", "NO", "SE"})
ADDRESS_FIELDS = ("street", "city", "state", "zipCode", "country")
CARRIER_NAME = "localcarrier"

_ALPHABET = string.ascii_letters + string.digits


class ApiFailure(Exception):
    """An error answer raised from inside an operation; `saved` says whether it is stored under the key."""

    def __init__(self, status: int, code: str, message: str, *, saved: bool = False) -> None:
        super().__init__(message)
        self.reply: Reply = (status, error_body(code, message))
        self.saved = saved


def new_id(prefix: str) -> str:
    """An object id such as `shp_3Qx...` (24 random characters)."""
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def tracking_number() -> str:
    """`LC` and 12 random digits."""
    return "LC" + "".join(secrets.choice(string.digits) for _ in range(12))


def iso(timestamp: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds, e.g. `2025-01-31T12:00:00.000Z`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(code: str, message: str) -> Json:
    """The carrier's error envelope: {"error": {"code", "message"}}."""
    return {"error": {"code": code, "message": message}}


def invalid(message: str) -> ApiFailure:
    """A 400 invalid_request answer (not saved under the idempotency key: nothing ran)."""
    return ApiFailure(400, "invalid_request", message)


def check_create(body: Any) -> Json:
    """Validate a POST /v1/shipments body: orderId, address with string fields, items with productId/quantity."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    unknown = set(body) - {"orderId", "address", "items"}
    if unknown:
        raise invalid(f"unknown fields: {sorted(unknown)}")
    if not isinstance(body.get("orderId"), str) or not body["orderId"]:
        raise invalid("orderId must be a non-empty string")
    address = body.get("address")
    if not isinstance(address, dict):
        raise invalid("address must be an object")
    for name in ADDRESS_FIELDS:
        if not isinstance(address.get(name), str | None):
            raise invalid(f"address.{name} must be a string")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise invalid("items must be a non-empty list")
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("productId"), str):
            raise invalid(f"items[{n}].productId must be a string")
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise invalid(f"items[{n}].quantity must be an integer >= 1")
    return body


def address_problem(address: Json) -> str | None:
    """Why the carrier will not deliver to this address, or None when it will."""
    country = str(address.get("country") or "").strip().upper()
    if country not in SERVED_COUNTRIES:
        return f"localcarrier does not deliver to {country or 'an address without a country'}"
    if not str(address.get("street") or "").strip():
        return "the address has no street"
    return None


def shipment_object(body: Json, idempotency_key: str, created: float, pickup_delay_s: float) -> Json:
    """A new shipment in status `created`, to be picked up `pickup_delay_s` after `created`."""
    return {
        "id": new_id("shp"),
        "orderId": body["orderId"],
        "status": "created",
        "trackingNumber": tracking_number(),
        "carrier": CARRIER_NAME,
        "idempotencyKey": idempotency_key,
        "createdAt": iso(created),
        "pickupAt": iso(created + pickup_delay_s),
        "cancelledAt": None,
        "address": body["address"],
        "items": body["items"],
    }

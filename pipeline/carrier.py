"""The carrier over HTTP: create, look up and void shipments, with transport and HTTP errors mapped at the boundary.

The carrier's own records are the truth about a shipment, not ours. A create whose answer was lost (a read timeout,
a connection dropped after the request went out) may or may not have made a shipment, and only the carrier knows:
that is `ShipmentInDoubt`. `find_shipment(idempotency_key)` exists to ask it: the carrier's lookup by key is
authoritative and consistent, so the caller learns whether the shipment exists (and its id, to void it) before
deciding anything else. Retrying the create with the same key is safe too: the carrier replays its saved answer.
Retries belong to the caller (Dramatiq), so this adapter makes exactly one HTTP request per call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, LocationValueError

from pipeline.errors import (
    CarrierRejected,
    InvalidAddress,
    PipelineError,
    ShipmentInDoubt,
    ShipmentPickedUp,
    TransientError,
)
from pipeline.http_pool import pool_manager

# Failures that happen before any byte of the request reaches the carrier: nothing can have been applied.
# (A refused or unresolvable connection is a NewConnectionError, a kind of ConnectTimeoutError.)
_NOT_SENT = (ConnectTimeoutError, LocationValueError)

T = TypeVar("T")


@dataclass(frozen=True)
class Shipment:
    """A shipment as the saga sees it (status is the carrier's: `created`, `cancelled`, `picked_up`)."""

    shipment_id: str
    tracking_number: str
    status: str


def _shipment(data: Any) -> Shipment:
    return Shipment(str(data["id"]), str(data["trackingNumber"]), str(data["status"]))


def _first_shipment(data: Any) -> Shipment | None:
    found = data["data"]
    return _shipment(found[0]) if found else None


def _error_fields(response: urllib3.BaseHTTPResponse) -> tuple[str | None, str]:
    """The carrier's {"error": {"code", "message"}}, or the raw text for answers from anything else (a proxy)."""
    reason = response.reason or str(response.status)
    try:
        error = response.json()["error"]
        return error.get("code"), str(error.get("message") or error.get("code") or reason)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, response.data[:200].decode("utf-8", "replace") or reason


def _http_error(response: urllib3.BaseHTTPResponse) -> PipelineError:
    """Map a non-2xx answer: 5xx/429 transient; address and pickup refusals by code; any other refusal permanent."""
    status = response.status
    code, message = _error_fields(response)
    if status >= 500 or status == 429:
        return TransientError(f"carrier answered {status}: {message}", http_status=status, code=code)
    if status == 422 and code == "address_rejected":
        return InvalidAddress(message, http_status=status, code=code)
    if status == 409 and code == "already_picked_up":
        return ShipmentPickedUp(message, http_status=status, code=code)
    return CarrierRejected(message, http_status=status, code=code)


class HttpCarrier:
    """The saga's carrier adapter over one thread-safe urllib3 pool (kept-alive connections, pipeline.http_pool)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 10.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._pool = pool_manager(self._base_url, timeout_s)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()

    def __enter__(self) -> HttpCarrier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_shipment(
        self, *, order_id: uuid.UUID, address: dict[str, Any], items: list[dict[str, Any]], idempotency_key: str
    ) -> Shipment:
        """Create the shipment; the same key never ships twice (a replay answers the first shipment)."""
        body = {"orderId": str(order_id), "address": address, "items": items}
        headers = {"Idempotency-Key": idempotency_key}
        try:
            return self._call("POST", "/v1/shipments", _shipment, in_doubt=True, json=body, headers=headers)
        except ShipmentInDoubt as e:
            e.details.update(order_id=str(order_id), idempotency_key=idempotency_key)
            raise

    def find_shipment(self, idempotency_key: str) -> Shipment | None:
        """The shipment the carrier created under this key, or None if it created none (authoritative)."""
        return self._call("GET", "/v1/shipments", _first_shipment, fields={"idempotencyKey": idempotency_key})

    def cancel_shipment(self, shipment_id: str, idempotency_key: str) -> Shipment:
        """Void the shipment; voiding a voided one answers it again; a picked-up one raises ShipmentPickedUp."""
        headers = {"Idempotency-Key": idempotency_key}
        return self._call("POST", f"/v1/shipments/{shipment_id}/cancel", _shipment, headers=headers)

    def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        in_doubt: bool = False,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> T:
        """One request, its answer parsed; `in_doubt` marks a call whose effect may stand though its answer is lost."""
        url, sent_headers = self._base_url + path, self._headers | (headers or {})
        try:
            response = self._pool.request(method, url, headers=sent_headers, redirect=False, **kwargs)
        except _NOT_SENT as e:
            raise TransientError(f"could not reach the carrier: {e!r}") from e
        except HTTPError as e:
            # Read timeouts, dropped connections, protocol errors: the request may have been applied.
            if in_doubt:
                raise ShipmentInDoubt(f"the carrier's answer was lost: {e!r}") from e
            raise TransientError(f"the carrier did not answer: {e!r}") from e
        if not 200 <= response.status < 300:
            raise _http_error(response)
        try:
            return parse(response.json())
        except (ValueError, KeyError, IndexError, TypeError) as e:
            message = f"unreadable answer from the carrier ({response.status}): {e!r}"
            raise (ShipmentInDoubt(message) if in_doubt else TransientError(message)) from e

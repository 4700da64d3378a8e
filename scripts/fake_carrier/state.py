"""In-memory carrier account: shipments and saved idempotent answers, behind one lock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .objects import ApiFailure, Json, Reply, address_problem, iso, shipment_object

_LEDGER_FIELDS = ("id", "orderId", "idempotencyKey", "status", "trackingNumber", "createdAt", "pickupAt", "cancelledAt")


@dataclass(frozen=True)
class Saved:
    """An answer stored under an idempotency key, with the request it answered."""

    fingerprint: str
    status: int
    body: bytes


def _not_found(shipment_id: str) -> ApiFailure:
    return ApiFailure(404, "not_found", f"No such shipment: '{shipment_id}'")


class Store:
    """One carrier account held in memory; every operation runs under one lock, so same-key requests serialize."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every shipment and every idempotency key."""
        with self._lock:
            self.shipments: dict[str, Json] = {}
            self.pickup_at: dict[str, float] = {}
            self.by_key: dict[str, str] = {}
            self.saved: dict[str, Saved] = {}

    def execute(self, idem_key: str, fingerprint: str, op: Callable[[], Reply]) -> tuple[int, bytes, bool]:
        """Run `op` atomically under Idempotency-Key `idem_key`; returns (status, body, replayed)."""
        with self._lock:
            saved = self.saved.get(idem_key)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    msg = f"Idempotency-Key '{idem_key}' was already used with a different request."
                    return 409, _dump(ApiFailure(409, "idempotency_key_reused", msg).reply[1]), False
                return saved.status, saved.body, True
            status, body, save = _attempt(op)
            data = _dump(body)  # snapshot now: later changes (pickup, cancel) must not leak into a replay
            if save:
                self.saved[idem_key] = Saved(fingerprint, status, data)
            return status, data, False

    def run(self, op: Callable[[], Reply]) -> tuple[int, bytes]:
        """Run `op` atomically without idempotency (reads, and cancel, which is idempotent by itself)."""
        with self._lock:
            status, body, _ = _attempt(op)
            return status, _dump(body)

    def create(self, body: Json, idem_key: str, pickup_delay_s: float) -> Reply:
        """POST /v1/shipments: refuse an address the carrier does not serve (saved), else create the shipment."""
        problem = address_problem(body["address"])
        if problem:
            raise ApiFailure(422, "address_rejected", problem, saved=True)
        created = self._clock()
        shipment = shipment_object(body, idem_key, created, pickup_delay_s)
        self.shipments[shipment["id"]] = shipment
        self.pickup_at[shipment["id"]] = created + pickup_delay_s
        self.by_key[idem_key] = shipment["id"]
        return 201, shipment

    def find(self, idem_key: str) -> Reply:
        """GET /v1/shipments?idempotencyKey=K: the shipment created under K, if any."""
        shipment_id = self.by_key.get(idem_key)
        return 200, {"data": [self._current(shipment_id)] if shipment_id else []}

    def shipment(self, shipment_id: str) -> Reply:
        """GET /v1/shipments/{id}."""
        return 200, self._current(shipment_id)

    def cancel(self, shipment_id: str) -> Reply:
        """POST /v1/shipments/{id}/cancel: void it unless picked up; cancelling twice answers the same."""
        shipment = self._current(shipment_id)
        if shipment["status"] == "picked_up":
            msg = f"Shipment {shipment_id} was picked up at {shipment['pickupAt']} and can no longer be voided."
            raise ApiFailure(409, "already_picked_up", msg)
        if shipment["status"] == "created":
            shipment.update(status="cancelled", cancelledAt=iso(self._clock()))
        return 200, shipment

    def pick_up(self, shipment_id: str) -> Reply:
        """POST /_control/shipments/{id}/pickup: the courier takes it now (a cancelled shipment stays cancelled)."""
        shipment = self._current(shipment_id)
        if shipment["status"] == "cancelled":
            raise ApiFailure(409, "shipment_cancelled", f"Shipment {shipment_id} was cancelled.")
        if shipment["status"] == "created":
            now = self._clock()
            self.pickup_at[shipment_id] = now
            shipment.update(status="picked_up", pickupAt=iso(now))
        return 200, shipment

    def ledger(self) -> list[Json]:
        """Every shipment with its status as of now, for audits."""
        with self._lock:
            return [{k: self._current(i)[k] for k in _LEDGER_FIELDS} for i in self.shipments]

    def _current(self, shipment_id: str) -> Json:
        """The shipment, picked up first if its pickup time has come (pickup is evaluated lazily, on every read)."""
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise _not_found(shipment_id)
        if shipment["status"] == "created" and self._clock() >= self.pickup_at[shipment_id]:
            shipment["status"] = "picked_up"
        return shipment


def _attempt(op: Callable[[], Reply]) -> tuple[int, Json, bool]:
    try:
        status, body = op()
    except ApiFailure as failure:
        return *failure.reply, failure.saved
    return status, body, True


def _dump(body: Json) -> bytes:
    return json.dumps(body).encode()

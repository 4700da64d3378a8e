"""The loopback carrier over real HTTP: shipments, idempotency keys, lookup, voids, pickup, faults, auth."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from scripts.fake_carrier import FakeCarrierServer, Faults

API_KEY = "ck_test_orderflow"
ROOT = Path(__file__).resolve().parents[2]


def poll(seconds: float = 5.0) -> Retrying:
    """Retry a block until its assertions hold (and the server answers) or `seconds` pass."""
    retry = retry_if_exception_type((AssertionError, httpx.ConnectError))
    return Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.05), retry=retry, reraise=True)


@pytest.fixture
def carrier(carrier_server: FakeCarrierServer) -> FakeCarrierServer:
    """The run's local carrier (tests/conftest.py), emptied and with its start-up faults."""
    return carrier_server


@pytest.fixture
def http(carrier: FakeCarrierServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=carrier.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5) as client:
        yield client


def shipment_body(country: str = "US", street: str = "1 Main St") -> dict[str, Any]:
    address = {"street": street, "city": "Springfield", "state": "IL", "zipCode": "62701", "country": country}
    items = [{"productId": str(uuid.uuid4()), "quantity": 2}]
    return {"orderId": str(uuid.uuid4()), "address": address, "items": items}


def create(http: httpx.Client, key: str, body: dict[str, Any]) -> httpx.Response:
    return http.post("/v1/shipments", json=body, headers={"Idempotency-Key": key})


def test_a_new_shipment_has_a_tracking_number_and_a_pickup_time_and_is_found_by_key_and_by_id(
    http: httpx.Client,
) -> None:
    body = shipment_body()
    response = create(http, "k-1", body)
    shipment = response.json()
    assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    assert shipment["id"].startswith("shp_") and shipment["status"] == "created"
    assert shipment["trackingNumber"][:2] == "LC" and shipment["trackingNumber"][2:].isdigit()
    assert len(shipment["trackingNumber"]) == 14 and shipment["carrier"] == "localcarrier"
    assert (shipment["orderId"], shipment["idempotencyKey"], shipment["cancelledAt"]) == (body["orderId"], "k-1", None)
    assert (shipment["address"], shipment["items"]) == (body["address"], body["items"])
    delay = datetime.fromisoformat(shipment["pickupAt"]) - datetime.fromisoformat(shipment["createdAt"])
    assert abs(delay.total_seconds() - 30.0) < 0.01
    assert http.get("/v1/shipments", params={"idempotencyKey": "k-1"}).json() == {"data": [shipment]}
    assert http.get(f"/v1/shipments/{shipment['id']}").json() == shipment
    assert http.get("/v1/shipments", params={"idempotencyKey": "k-other"}).json() == {"data": []}
    assert http.get("/v1/shipments/shp_nope").json()["error"]["code"] == "not_found"
    assert http.get("/v1/shipments").status_code == 400


def test_the_same_key_replays_the_saved_answer_and_refuses_a_different_body(
    http: httpx.Client, carrier: FakeCarrierServer
) -> None:
    body = shipment_body()
    first, again = create(http, "k-replay", body), create(http, "k-replay", body)
    assert (again.status_code, again.json(), again.headers["idempotent-replayed"]) == (201, first.json(), "true")
    reused = create(http, "k-replay", shipment_body())
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(carrier.ledger()) == 1


@pytest.mark.parametrize(("country", "street"), [("ZZ", "1 Main St"), ("", "1 Main St"), ("GB", "   ")])
def test_an_address_the_carrier_does_not_serve_is_rejected_and_the_rejection_is_saved_under_the_key(
    http: httpx.Client, carrier: FakeCarrierServer, country: str, street: str
) -> None:
    body = shipment_body(country, street)
    first, again = create(http, "k-bad", body), create(http, "k-bad", body)
    assert first.status_code == 422 and first.json()["error"]["code"] == "address_rejected"
    assert first.json()["error"]["message"]
    assert (again.status_code, again.json(), again.headers["idempotent-replayed"]) == (422, first.json(), "true")
    assert carrier.ledger() == []
    assert http.get("/v1/shipments", params={"idempotencyKey": "k-bad"}).json() == {"data": []}


def test_a_create_without_a_key_or_with_a_malformed_body_is_a_bad_request_that_saves_nothing(
    http: httpx.Client, carrier: FakeCarrierServer
) -> None:
    keyless = http.post("/v1/shipments", json=shipment_body())
    assert keyless.status_code == 400 and keyless.json()["error"]["code"] == "idempotency_key_missing"
    bad = shipment_body() | {"items": [{"productId": "p-1", "quantity": 0}]}
    assert create(http, "k-malformed", bad).json()["error"]["code"] == "invalid_request"
    assert http.post("/v1/shipments", content=b"{", headers={"Idempotency-Key": "k-malformed"}).status_code == 400
    assert carrier.ledger() == []
    assert create(http, "k-malformed", shipment_body()).status_code == 201


def test_a_shipment_can_be_voided_until_it_is_picked_up_at_its_pickup_time_or_when_told(
    http: httpx.Client, carrier: FakeCarrierServer
) -> None:
    carrier.set_faults(pickup_delay_s=0.5)
    voided, lazy, told = (create(http, f"k-pickup-{n}", shipment_body()).json() for n in range(3))
    cancel = http.post(f"/v1/shipments/{voided['id']}/cancel", headers={"Idempotency-Key": "k-void"})
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled" and cancel.json()["cancelledAt"]
    again = http.post(f"/v1/shipments/{voided['id']}/cancel")
    assert (again.status_code, again.json()) == (200, cancel.json())
    assert carrier.pick_up(told["id"])["status"] == "picked_up" and lazy["status"] == "created"
    with pytest.raises(ValueError, match="409"):
        carrier.pick_up(voided["id"])
    for attempt in poll():
        with attempt:
            assert http.get(f"/v1/shipments/{lazy['id']}").json()["status"] == "picked_up"
    assert [e["status"] for e in carrier.ledger()] == ["cancelled", "picked_up", "picked_up"]
    for shipment in (lazy, told):
        refused = http.post(f"/v1/shipments/{shipment['id']}/cancel")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "already_picked_up"
    assert http.post("/v1/shipments/shp_nope/cancel").status_code == 404
    assert create(http, "k-pickup-1", shipment_body()).status_code == 409  # the key stays taken after pickup


def test_a_server_error_applies_nothing_but_a_lost_answer_applies_the_create_and_the_void(
    http: httpx.Client, carrier: FakeCarrierServer
) -> None:
    carrier.set_faults(error_rate=1)
    body = shipment_body()
    failed = create(http, "k-lost", body)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "server_error"
    assert carrier.ledger() == []
    carrier.set_faults(error_rate=0, lost_answer_rate=1, timeout_delay_s=5)
    with httpx.Client(base_url=carrier.url, headers=http.headers, timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            create(impatient, "k-lost", body)
        [entry] = carrier.ledger()
        assert (entry["idempotencyKey"], entry["orderId"], entry["status"]) == ("k-lost", body["orderId"], "created")
        with pytest.raises(httpx.ReadTimeout):
            impatient.post(f"/v1/shipments/{entry['id']}/cancel")
    assert [e["status"] for e in carrier.ledger()] == ["cancelled"]
    carrier.set_faults(lost_answer_rate=0)
    retry = create(http, "k-lost", body)
    assert (retry.status_code, retry.json()["id"], retry.headers["idempotent-replayed"]) == (201, entry["id"], "true")
    assert retry.json()["status"] == "created"  # the saved answer, as it was when the shipment was created


@pytest.mark.parametrize("authorization", [None, "Bearer sk_test_stripe_key", "Basic ck_test_x", "ck_test_no_scheme"])
def test_requests_without_a_test_key_are_unauthorized(carrier: FakeCarrierServer, authorization: str | None) -> None:
    headers = {"Idempotency-Key": "k-auth"} | ({"Authorization": authorization} if authorization else {})
    response = httpx.post(f"{carrier.url}/v1/shipments", json=shipment_body(), headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert carrier.ledger() == []


def test_concurrent_creates_with_one_key_make_one_shipment(http: httpx.Client, carrier: FakeCarrierServer) -> None:
    body = shipment_body()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: create(http, "k-race", body), range(8)))
    assert {r.status_code for r in responses} == {201} and len({r.json()["id"] for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert len(carrier.ledger()) == 1


def test_faults_are_seeded_validated_delay_answers_and_are_restored_by_reset(
    http: httpx.Client, carrier: FakeCarrierServer
) -> None:
    runs = []
    for _ in range(2):
        carrier.set_faults(error_rate=0.5, seed=7)
        runs.append([http.get("/v1/shipments", params={"idempotencyKey": "k"}).status_code for _ in range(12)])
    assert runs[0] == runs[1] and set(runs[0]) == {200, 500}
    for settings in ({"error_rat": 1}, {"error_rate": 0.7, "lost_answer_rate": 0.7}, {"pickup_delay_s": -1}):
        with pytest.raises(ValueError, match="400"):
            carrier.set_faults(**settings)
    carrier.set_faults(error_rate=0, latency_ms=150)
    started = time.monotonic()
    assert http.get("/v1/shipments", params={"idempotencyKey": "k"}).status_code == 200
    assert time.monotonic() - started >= 0.15
    carrier.reset()
    assert httpx.get(f"{carrier.url}/_control/faults").json() == Faults().to_dict()


def test_the_module_runs_as_a_server_with_faults_from_its_environment() -> None:
    env = {"FAKE_CARRIER_ERROR_RATE": "1", "FAKE_CARRIER_PICKUP_DELAY_S": "1.5", "FAKE_CARRIER_SEED": "3"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "scripts.fake_carrier", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ | env, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {API_KEY}"}) as c:
            for attempt in poll(10):
                with attempt:
                    assert process.poll() is None, "the server exited"
                    assert c.get("/v1/shipments", params={"idempotencyKey": "k"}).status_code == 500
            assert c.get("/_control/faults").json() == Faults(error_rate=1, pickup_delay_s=1.5, seed=3).to_dict()
    finally:
        process.terminate()
        process.wait(timeout=10)

"""HttpCarrier against the loopback carrier over real HTTP: the happy path and every error mapped at the boundary."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pipeline.carrier import HttpCarrier, Shipment
from pipeline.errors import (
    CarrierRejected,
    InvalidAddress,
    PermanentError,
    ShipmentInDoubt,
    ShipmentPickedUp,
    TransientError,
)
from scripts.fake_carrier import FakeCarrierServer

API_KEY = "ck_test_orderflow"
ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": None, "zipCode": "62701", "country": "US"}

Connect = Callable[..., HttpCarrier]


@pytest.fixture
def carrier(carrier_server: FakeCarrierServer) -> FakeCarrierServer:
    """The run's local carrier (tests/conftest.py), emptied and with its start-up faults."""
    return carrier_server


@pytest.fixture
def connect(carrier: FakeCarrierServer) -> Iterator[Connect]:
    """Make adapters (closed after the test so no socket is left to the GC)."""
    made: list[HttpCarrier] = []

    def make(url: str | None = None, api_key: str = API_KEY, timeout_s: float = 5.0) -> HttpCarrier:
        made.append(HttpCarrier(url or carrier.url, api_key, timeout_s))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def adapter(connect: Connect) -> HttpCarrier:
    return connect()


def ship(adapter: HttpCarrier, key: str, address: dict[str, Any] | None = None) -> Shipment:
    items = [{"productId": str(uuid.uuid4()), "quantity": 1}]
    return adapter.create_shipment(order_id=uuid.uuid4(), address=address or ADDRESS, items=items, idempotency_key=key)


def test_a_shipment_is_created_found_by_its_key_and_voided(adapter: HttpCarrier, carrier: FakeCarrierServer) -> None:
    shipment = ship(adapter, "o-1:ship")
    assert shipment.status == "created" and shipment.shipment_id.startswith("shp_")
    assert shipment.tracking_number.startswith("LC")
    assert adapter.find_shipment("o-1:ship") == shipment
    assert adapter.find_shipment("o-2:ship") is None
    voided = adapter.cancel_shipment(shipment.shipment_id, "o-1:cancel_shipment")
    assert voided == Shipment(shipment.shipment_id, shipment.tracking_number, "cancelled")
    assert adapter.cancel_shipment(shipment.shipment_id, "o-1:cancel_shipment") == voided
    assert [e["status"] for e in carrier.ledger()] == ["cancelled"]


def test_creating_twice_with_one_key_answers_the_first_shipment(adapter: HttpCarrier) -> None:
    order_id, items = uuid.uuid4(), [{"productId": "p-1", "quantity": 3}]
    first, again = (
        adapter.create_shipment(order_id=order_id, address=ADDRESS, items=items, idempotency_key="o-3:ship")
        for _ in range(2)
    )
    assert first == again


def test_one_adapter_serves_many_threads(adapter: HttpCarrier, carrier: FakeCarrierServer) -> None:
    with ThreadPoolExecutor(8) as pool:
        shipments = list(pool.map(lambda n: ship(adapter, f"o-{n}:ship"), range(16)))
    assert len({s.shipment_id for s in shipments}) == 16 == len(carrier.ledger())


def test_a_lost_create_answer_is_in_doubt_and_the_lookup_by_key_finds_the_shipment(
    connect: Connect, carrier: FakeCarrierServer
) -> None:
    carrier.set_faults(lost_answer_rate=1, timeout_delay_s=2)
    with pytest.raises(ShipmentInDoubt) as caught:
        ship(connect(timeout_s=0.5), "o-lost:ship")
    assert isinstance(caught.value, TransientError) and caught.value.details["idempotency_key"] == "o-lost:ship"
    carrier.set_faults(lost_answer_rate=0)
    found = connect().find_shipment("o-lost:ship")
    assert found is not None and found.status == "created"
    assert [e["id"] for e in carrier.ledger()] == [found.shipment_id]


def test_a_lost_void_answer_is_a_plain_transient_error(connect: Connect, carrier: FakeCarrierServer) -> None:
    # The local carrier loses answers to writes only; a void is safe to repeat, so it is not in doubt.
    shipment = ship(connect(), "o-4:ship")
    carrier.set_faults(lost_answer_rate=1, timeout_delay_s=2)
    impatient = connect(timeout_s=0.3)
    with pytest.raises(TransientError) as caught:
        impatient.cancel_shipment(shipment.shipment_id, "o-4:cancel_shipment")
    assert not isinstance(caught.value, ShipmentInDoubt)


def test_a_server_error_is_transient_with_its_http_status(adapter: HttpCarrier, carrier: FakeCarrierServer) -> None:
    shipment = ship(adapter, "o-5:ship")
    carrier.set_faults(error_rate=1)
    calls: list[Callable[[], object]] = [
        lambda: ship(adapter, "o-6:ship"),
        lambda: adapter.find_shipment("o-5:ship"),
        lambda: adapter.cancel_shipment(shipment.shipment_id, "o-5:cancel_shipment"),
    ]
    for call in calls:
        with pytest.raises(TransientError) as caught:
            call()
        assert not isinstance(caught.value, ShipmentInDoubt)
        assert (caught.value.details["http_status"], caught.value.details["code"]) == (500, "server_error")
    assert len(carrier.ledger()) == 1


def test_a_closed_port_is_transient_and_not_in_doubt(connect: Connect) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = connect(f"http://127.0.0.1:{port}")
    calls: list[Callable[[], object]] = [lambda: ship(closed, "o-7:ship"), lambda: closed.find_shipment("o-7:ship")]
    for call in calls:
        with pytest.raises(TransientError) as caught:
            call()
        assert not isinstance(caught.value, ShipmentInDoubt)


@pytest.mark.parametrize(("changes", "reason"), [({"country": "ZZ"}, "ZZ"), ({"street": " "}, "no street")])
def test_an_address_the_carrier_does_not_serve_is_an_invalid_address(
    adapter: HttpCarrier, changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidAddress, match=reason) as caught:
        ship(adapter, "o-8:ship", ADDRESS | changes)
    assert isinstance(caught.value, PermanentError) and caught.value.details["http_status"] == 422
    assert adapter.find_shipment("o-8:ship") is None


def test_voiding_a_picked_up_shipment_raises_shipment_picked_up(
    adapter: HttpCarrier, carrier: FakeCarrierServer
) -> None:
    shipment = ship(adapter, "o-9:ship")
    carrier.pick_up(shipment.shipment_id)
    assert adapter.find_shipment("o-9:ship") == Shipment(shipment.shipment_id, shipment.tracking_number, "picked_up")
    with pytest.raises(ShipmentPickedUp) as caught:
        adapter.cancel_shipment(shipment.shipment_id, "o-9:cancel_shipment")
    assert caught.value.details == {"http_status": 409, "code": "already_picked_up"}


def test_a_key_reused_for_another_shipment_is_a_carrier_rejection(adapter: HttpCarrier) -> None:
    ship(adapter, "o-10:ship")
    with pytest.raises(CarrierRejected) as caught:
        ship(adapter, "o-10:ship")
    assert caught.value.details == {"http_status": 409, "code": "idempotency_key_reused"}


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda a: a.cancel_shipment("shp_unknown", "k"), 404, "not_found"),
        (lambda a: ship(a, "o-11:ship", {"street": 5}), 400, "invalid_request"),
    ],
)
def test_requests_the_carrier_refuses_are_carrier_rejections(
    adapter: HttpCarrier, call: Callable[[HttpCarrier], object], status: int, code: str
) -> None:
    with pytest.raises(CarrierRejected) as caught:
        call(adapter)
    assert caught.value.details == {"http_status": status, "code": code}


def test_a_key_that_is_not_a_test_key_is_a_carrier_rejection(connect: Connect) -> None:
    with pytest.raises(CarrierRejected) as caught:
        ship(connect(api_key="sk_live_nope"), "o-12:ship")
    assert caught.value.details == {"http_status": 401, "code": "unauthorized"}

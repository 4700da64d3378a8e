"""Shops' webhooks end to end: orders through the real saga, the reaper's pass, the actor, a real receiving server.

The receiver is a threaded HTTP server on 127.0.0.1 that records every request and verifies it with the
`standardwebhooks` library, as a shop would.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from standardwebhooks import Webhook
from tenacity import Retrying, stop_after_delay, wait_fixed

from models.db import engine_for, transaction
from pipeline import webhook_store
from pipeline.config import get_settings
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.saga_helpers import wait_until_terminal
from workers.enqueue import start_saga
from workers.operator.events import event_story, redeliver
from workers.webhooks.fanout import webhook_pass

FAST = {
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
    "WEBHOOK_TIMEOUT_S": "1",
    "WEBHOOK_BACKOFF_BASE_S": "0.1",
    "WEBHOOK_BACKOFF_CAP_S": "0.3",
    "WEBHOOK_REDRIVE_AFTER_S": "0.5",
}


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    payload: dict[str, Any]


@dataclass
class Receiver:
    """What the shop's server got, and how it answers: a status, after a delay; the first `failures` get 500."""

    url: str
    status: int = 204
    delay_s: float = 0.0
    failures: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [request.payload for request in self.requests]


@pytest.fixture
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Settings for delivery in seconds (the worker's actor and the pass read them): loopback allowed over http."""
    env = dict(FAST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    monkeypatch.undo()
    get_settings.cache_clear()


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


class Receivers:
    """Receiving servers started by a test, stopped after it."""

    def __init__(self) -> None:
        self.servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(self, **answer: Any) -> Receiver:
        receiver = Receiver(url="", **answer)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                with receiver.lock:
                    fail = len(receiver.requests) < receiver.failures
                    receiver.requests.append(Received(dict(self.headers.items()), body, json.loads(body)))
                time.sleep(receiver.delay_s)
                self.send_response(500 if fail else receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        self.servers.append((server, thread))
        return receiver

    def stop(self) -> None:
        for server, thread in self.servers:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    started = Receivers()
    yield started
    started.stop()


def endpoint(db_url: str, client_id: str, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    with transaction(db_url) as connection:
        return dict(webhook_store.create_endpoint(connection, client_id, url, event_types or []))


def run_orders(db_url: str, client_id: str, count: int) -> list[uuid.UUID]:
    product = make_product(db_url, stock=100)
    orders = [make_order(db_url, [(product, 1)], client_id=client_id) for _ in range(count)]
    for order_id in orders:
        start_saga(order_id)
    return orders


def events_of(db_url: str, orders: list[uuid.UUID]) -> list[dict[str, Any]]:
    with engine_for(db_url).connect() as connection:
        rows = connection.execute(
            text("SELECT id, order_id, sequence, type FROM order_events WHERE order_id = ANY(:ids)"), {"ids": orders}
        )
        return [dict(row._mapping) for row in rows]


def pump_until(check: Any, seconds: float = 40) -> None:
    """Run the reaper's webhook pass until `check()` passes (it asserts)."""
    for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.2), reraise=True):
        with attempt:
            webhook_pass(get_settings())
            check()


def scalar(db_url: str, sql: str, **params: Any) -> Any:
    with engine_for(db_url).connect() as connection:
        return connection.execute(text(sql), params).scalar()


def by_order(payloads: list[dict[str, Any]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for payload in payloads:
        found.setdefault(payload["data"]["order"]["id"], []).append(payload["sequence"])
    return found


def test_a_shop_receives_every_event_of_its_orders_signed_and_in_sequence_order(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
) -> None:
    receiver = receivers.start()
    secret = endpoint(db_url, "shop-a", receiver.url)["secret"]

    orders = run_orders(db_url, "shop-a", 4)
    wait_until_terminal(db_url, orders)
    expected = events_of(db_url, orders)

    def all_received_and_recorded() -> None:
        assert len(receiver.events()) == len(expected)
        # The worker records the 2xx after the receiver has it: wait for that commit too.
        assert scalar(db_url, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == len(expected)

    pump_until(all_received_and_recorded)
    with receiver.lock:
        requests = list(receiver.requests)
    for request in requests:
        assert Webhook(secret).verify(request.body, request.headers) == request.payload
        assert request.headers["webhook-id"] == request.payload["id"]
    sequences = by_order([request.payload for request in requests])
    assert set(sequences) == {str(order_id) for order_id in orders}
    assert all(seen == sorted(seen) == list(range(1, len(seen) + 1)) for seen in sequences.values()), sequences
    assert {request.payload["id"] for request in requests} == {str(event["id"]) for event in expected}
    delivered = scalar(db_url, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
    assert delivered == len(expected)


def test_an_endpoint_answering_500_is_retried_with_the_same_id_and_then_disabled(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, WEBHOOK_DISABLE_AFTER_S="1.5")
    receiver = receivers.start(status=500)
    hook = endpoint(db_url, "shop-a", receiver.url)
    disabled_before = REGISTRY.get_sample_value("orderflow_webhook_endpoints_auto_disabled_total") or 0

    orders = run_orders(db_url, "shop-a", 1)
    wait_until_terminal(db_url, orders)

    def disabled() -> None:
        assert scalar(db_url, "SELECT enabled FROM webhook_endpoints WHERE id = :id", id=hook["id"]) is False

    pump_until(disabled)
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert len(receiver.requests) >= 3 and len(ids) == 1, "only the first event, retried, until disabled"
    assert {request.payload["sequence"] for request in receiver.requests} == {1}
    reason = scalar(db_url, "SELECT disabled_reason FROM webhook_endpoints WHERE id = :id", id=hook["id"])
    assert "failed for 1.5 s" in reason and "HTTP 500" in reason
    codes = scalar(db_url, "SELECT array_agg(DISTINCT response_code) FROM webhook_attempts")
    assert codes == [500]
    statuses = scalar(db_url, "SELECT array_agg(DISTINCT status) FROM webhook_deliveries")
    assert statuses == ["skipped"]
    assert REGISTRY.get_sample_value("orderflow_webhook_endpoints_auto_disabled_total") == disabled_before + 1


def test_an_endpoint_that_fails_a_few_times_gets_everything_once_it_answers_2xx(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
) -> None:
    receiver = receivers.start(failures=3)
    endpoint(db_url, "shop-a", receiver.url)

    orders = run_orders(db_url, "shop-a", 1)
    wait_until_terminal(db_url, orders)
    expected = events_of(db_url, orders)

    def delivered() -> None:
        assert scalar(db_url, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == len(expected)

    pump_until(delivered)
    first = [payload["sequence"] for payload in receiver.events()]
    assert first[:4] == [1, 1, 1, 1], "the first event three times refused, then accepted"
    assert first[3:] == list(range(1, len(expected) + 1))
    assert scalar(db_url, "SELECT failing_since FROM webhook_endpoints") is None


def test_a_delivery_that_fails_past_the_retry_window_is_given_up_and_the_next_event_goes_out(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, WEBHOOK_RETRY_FOR_S="0.5")
    receiver = receivers.start(failures=1_000_000)
    endpoint(db_url, "shop-a", receiver.url)
    orders = run_orders(db_url, "shop-a", 1)
    wait_until_terminal(db_url, orders)
    expected = events_of(db_url, orders)

    def all_given_up() -> None:
        assert scalar(db_url, "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'") == len(expected)

    pump_until(all_given_up)
    sequences = [payload["sequence"] for payload in receiver.events()]
    assert sorted(set(sequences)) == list(range(1, len(expected) + 1)) and sequences == sorted(sequences)


def test_an_endpoint_that_never_answers_does_not_slow_the_saga(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
) -> None:
    receiver = receivers.start(delay_s=30)
    endpoint(db_url, "shop-a", receiver.url)
    stop = threading.Event()

    def reaper_loop() -> None:
        while not stop.wait(0.2):
            webhook_pass(get_settings())

    pumping = threading.Thread(target=reaper_loop, daemon=True)
    pumping.start()
    try:
        started = time.monotonic()
        orders = run_orders(db_url, "shop-a", 6)
        finished = wait_until_terminal(db_url, orders, seconds=30)
        took_s = time.monotonic() - started
        for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.2), reraise=True):
            with attempt:
                timeouts = scalar(db_url, "SELECT count(*) FROM webhook_attempts WHERE error LIKE 'timeout%'")
                assert timeouts >= len(orders)
    finally:
        stop.set()
        pumping.join(10)

    assert {order.status for order in finished.values()} == {"shipped"}
    assert took_s < 15, f"the saga took {took_s:.1f} s next to a hung endpoint"
    assert scalar(db_url, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == 0


def test_a_redelivered_event_keeps_its_webhook_id_and_a_lost_message_only_delays(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
) -> None:
    receiver = receivers.start()
    secret = endpoint(db_url, "shop-a", receiver.url)["secret"]
    orders = run_orders(db_url, "shop-a", 1)
    wait_until_terminal(db_url, orders)
    with transaction(db_url) as connection:  # a fan-out whose messages were lost: nothing sent after the commit
        _, lost = webhook_store.fan_out(connection, 500, 3600)
    expected = events_of(db_url, orders)
    assert len(lost) == len(expected)

    pump_until(lambda: _assert_equal(len(receiver.events()), len(expected)))  # re-driven by the pass
    first_event = min(expected, key=lambda event: event["sequence"])
    assert redeliver(db_url, first_event["id"]) != []
    pump_until(lambda: _assert_equal(len(receiver.events()), len(expected) + 1))

    copies = [request for request in receiver.requests if request.payload["id"] == str(first_event["id"])]
    assert len(copies) == 2
    assert {copy.headers["webhook-id"] for copy in copies} == {str(first_event["id"])}
    assert all(Webhook(secret).verify(copy.body, copy.headers) for copy in copies)

    def both_attempts_recorded() -> None:  # the worker records an attempt after the receiver has it
        story = event_story(db_url, first_event["id"])
        assert story is not None and [len(d["attempt_log"]) for d in story["deliveries"]] == [2]

    pump_until(both_attempts_recorded)


def _assert_equal(found: object, wanted: object) -> None:
    assert found == wanted


def test_a_clients_endpoint_never_receives_another_clients_events(
    db_url: str,
    worker: dramatiq.Worker,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    fast_webhooks: dict[str, str],
    receivers: Receivers,
) -> None:
    for_a, for_b = receivers.start(), receivers.start()
    endpoint(db_url, "shop-a", for_a.url)
    endpoint(db_url, "shop-b", for_b.url, ["order.shipped"])

    orders_a, orders_b = run_orders(db_url, "shop-a", 2), run_orders(db_url, "shop-b", 2)
    wait_until_terminal(db_url, orders_a + orders_b)
    events_a = events_of(db_url, orders_a)

    def both_received() -> None:
        assert (len(for_a.events()), len(for_b.events())) == (len(events_a), len(orders_b))

    pump_until(both_received)
    assert set(by_order(for_a.events())) == {str(order_id) for order_id in orders_a}
    assert set(by_order(for_b.events())) == {str(order_id) for order_id in orders_b}
    assert {payload["type"] for payload in for_b.events()} == {"order.shipped"}

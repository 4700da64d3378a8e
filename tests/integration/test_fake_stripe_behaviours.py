"""The loopback Stripe behaves as Stripe documents: lagging search, processing and 3-D Secure, cancel, pending and
failed refunds, disputes, the dashboard, and signed webhooks delivered late, retried and given up on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import stripe
from tenacity import Retrying, stop_after_delay, wait_fixed

from scripts.fake_stripe import FakeStripeServer, Faults, WebhookTarget

API_KEY = "sk_test_fake_stripe_behaviours"
SECRET = "whsec_test_behaviours"
CARD_3DS = "pm_card_authenticationRequired"
THREADS = {"fake-stripe-ticker", "fake-stripe-webhooks"}
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def eventually(check: Callable[[], T], seconds: float = 5.0) -> T:
    """`check()`'s value once it stops raising (polled every 50 ms); its last error after `seconds`."""
    for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            return check()
    raise AssertionError("unreachable")


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on a loopback port that records what it is sent and answers `statuses` first, then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/webhooks"
        self.statuses: list[int] = []
        self.received: list[tuple[bytes, str, str]] = []
        self.lock = threading.Lock()

    def verified(self) -> list[stripe.Event]:
        """The deliveries answered 2xx, each checked with the signing secret as a real endpoint does."""
        with self.lock:
            assert all(content_type == "application/json" for _, _, content_type in self.received)
            return [stripe.Webhook.construct_event(body.decode(), sig, SECRET) for body, sig, _ in self.received]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            status = self.server.statuses.pop(0) if self.server.statuses else 200
            if status == 200:
                self.server.received.append((body, self.headers["Stripe-Signature"], self.headers["Content-Type"]))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    """A live webhook endpoint on a loopback port."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def receiver(stripe_server: FakeStripeServer, endpoint: Receiver) -> Iterator[Receiver]:
    """The live endpoint, with the fake Stripe forwarding its events to it."""
    stripe_server.configure_webhooks(endpoint.url, SECRET)
    yield endpoint
    stripe_server.disable_webhooks()


@pytest.fixture
def client(stripe_server: FakeStripeServer) -> Iterator[stripe.StripeClient]:
    session = requests.Session()
    http = stripe.RequestsClient(timeout=2.0, session=session)
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": stripe_server.url}, max_network_retries=0, http_client=http
    )
    session.close()


def pay(client: stripe.StripeClient, **params: Any) -> stripe.PaymentIntent:
    body: dict[str, Any] = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    body |= {"metadata": {"order_id": str(uuid.uuid4())}} | params
    return client.v1.payment_intents.create(params=body)  # type: ignore[arg-type]


def types_about(server: FakeStripeServer, object_id: str) -> list[str]:
    """The types of the events about `object_id` or about objects of that PaymentIntent, oldest first."""
    about = [
        e
        for e in server.events()
        if object_id in (e["data"]["object"]["id"], e["data"]["object"].get("payment_intent"))
    ]
    return [e["type"] for e in about]


def search(client: stripe.StripeClient, order_id: str) -> list[stripe.PaymentIntent]:
    return list(client.v1.payment_intents.search(params={"query": f"metadata['order_id']:'{order_id}'"}).data)


def test_a_lagging_search_hides_a_new_intent_then_shows_it_while_retrieve_is_current(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(search_lag_s=0.3)
    intent = pay(client, confirm=False)
    order = intent.metadata["order_id"]
    assert search(client, order) == []
    assert client.v1.payment_intents.retrieve(intent.id).id == intent.id
    assert [i.status for i in eventually(lambda: _nonempty(search(client, order)))] == ["requires_confirmation"]
    client.v1.payment_intents.confirm(intent.id)
    assert [i.status for i in search(client, order)] == ["requires_confirmation"]  # the change is not seen yet
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
    eventually(lambda: _status_is(search(client, order)[0], "succeeded"))


def _nonempty(found: list[T]) -> list[T]:
    assert found
    return found


def _status_is(obj: stripe.PaymentIntent | stripe.Refund, status: str) -> None:
    assert obj.status == status


def test_a_processing_intent_settles_to_succeeded_and_emits_its_events(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(processing_rate=1, processing_delay_s=0.3)
    intent = pay(client)
    assert (intent.status, intent.amount_received) == ("processing", 0)
    eventually(lambda: _status_is(client.v1.payment_intents.retrieve(intent.id), "succeeded"))
    settled = client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    charge = settled.latest_charge
    assert isinstance(charge, stripe.Charge) and (charge.status, charge.amount_captured) == ("succeeded", 2000)
    assert settled.amount_received == 2000
    assert types_about(stripe_server, intent.id) == [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]


def test_a_processing_intent_that_fails_needs_a_new_payment_method_even_if_nobody_reads_it(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(processing_rate=1, processing_failure_rate=1, processing_delay_s=0.2)
    intent = pay(client)
    eventually(lambda: _last(types_about(stripe_server, intent.id), "payment_intent.payment_failed"))
    failed = client.v1.payment_intents.retrieve(intent.id)
    assert (failed.status, failed.amount_received) == ("requires_payment_method", 0)
    assert failed.last_payment_error is not None and failed.last_payment_error.type == "card_error"
    assert client.v1.charges.retrieve(str(failed.latest_charge)).status == "failed"


def _last(items: list[str], expected: str) -> None:
    assert items and items[-1] == expected


def test_the_dashboard_settles_a_processing_intent_at_once(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(processing_rate=1, processing_delay_s=60)
    intent = pay(client)
    assert stripe_server.settle_intent(intent.id, "succeeded")["status"] == "succeeded"
    with pytest.raises(ValueError, match="payment_intent_unexpected_state"):
        stripe_server.settle_intent(intent.id, "failed")


def test_an_issuer_asking_for_authentication_leaves_the_intent_requiring_action_or_fails_it_when_asked(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(requires_action_rate=1)
    drawn = pay(client)
    assert (drawn.status, drawn.next_action and drawn.next_action.type) == ("requires_action", "use_stripe_sdk")
    with pytest.raises(stripe.CardError) as caught:
        pay(client, error_on_requires_action=True)
    assert (caught.value.http_status, caught.value.code) == (402, "authentication_required")
    assert types_about(stripe_server, drawn.id) == ["payment_intent.created", "payment_intent.requires_action"]
    assert client.v1.payment_intents.retrieve(drawn.id).status == "requires_action"


def test_the_authentication_required_test_card_always_asks_for_3d_secure(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    assert pay(client, payment_method=CARD_3DS).status == "requires_action"
    with pytest.raises(stripe.CardError) as caught:
        pay(client, payment_method=CARD_3DS, error_on_requires_action=True)
    error = caught.value.error
    assert caught.value.code == "authentication_required" and error is not None and error.payment_intent is not None
    assert client.v1.payment_intents.retrieve(error.payment_intent.id).status == "requires_payment_method"


@pytest.mark.parametrize("status", ["requires_payment_method", "requires_confirmation", "requires_action"])
def test_an_intent_can_be_canceled_before_the_money_moves(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, status: str
) -> None:
    if status == "requires_payment_method":
        intent = client.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})
    else:
        intent = (
            pay(client, confirm=False) if status == "requires_confirmation" else pay(client, payment_method=CARD_3DS)
        )
    assert intent.status == status
    options: Any = {"idempotency_key": f"cancel-{intent.id}"}
    reason: Any = {"cancellation_reason": "requested_by_customer"}
    canceled = client.v1.payment_intents.cancel(intent.id, params=reason, options=options)
    replay = client.v1.payment_intents.cancel(intent.id, params=reason, options=options)
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "requested_by_customer")
    assert canceled.canceled_at and replay.last_response and replay.last_response.headers["Idempotent-Replayed"]
    assert types_about(stripe_server, intent.id)[-1] == "payment_intent.canceled"


@pytest.mark.parametrize("faults", [{}, {"processing_rate": 1.0, "processing_delay_s": 60.0}, "canceled"])
def test_an_intent_cannot_be_canceled_once_processing_succeeded_or_canceled(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, faults: dict[str, float] | str
) -> None:
    if isinstance(faults, dict):
        stripe_server.set_faults(**faults)
        intent = pay(client)
    else:
        intent = client.v1.payment_intents.cancel(pay(client, confirm=False).id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(intent.id)
    assert (caught.value.http_status, caught.value.code) == (400, "payment_intent_unexpected_state")


def test_a_pending_refund_already_takes_the_money_then_settles(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(refund_pending_rate=1, refund_settle_s=0.3)
    intent = pay(client)
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1500})
    assert refund.status == "pending"
    assert client.v1.charges.retrieve(str(intent.latest_charge)).amount_refunded == 1500
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 501})
    assert too_much.value.code == "amount_too_large"
    [entry] = stripe_server.ledger()
    assert (entry["amount_refunded"], entry["amount_refund_pending"]) == (0, 1500)
    assert entry["refunds"] == [{"id": refund.id, "amount": 1500, "status": "pending"}]
    eventually(lambda: _status_is(client.v1.refunds.retrieve(refund.id), "succeeded"))
    assert (stripe_server.ledger()[0]["amount_refunded"], stripe_server.ledger()[0]["amount_refund_pending"]) == (
        1500,
        0,
    )
    assert types_about(stripe_server, refund.id) == ["refund.created", "charge.refund.updated", "refund.updated"]
    assert "charge.refunded" in types_about(stripe_server, intent.id)


def test_a_failed_refund_gives_the_money_back_and_may_be_refunded_again(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(refund_pending_rate=1, refund_failure_rate=1, refund_settle_s=0.2)
    intent = pay(client)
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "metadata": {"why": "test"}})
    assert refund.metadata is not None and refund.metadata.to_dict() == {"why": "test"}
    eventually(lambda: _status_is(client.v1.refunds.retrieve(refund.id), "failed"))
    failed = client.v1.refunds.retrieve(refund.id)
    assert (failed.failure_reason, failed.payment_intent) == ("expired_or_canceled_card", intent.id)
    assert types_about(stripe_server, refund.id)[-1] == "refund.failed"
    assert client.v1.charges.retrieve(str(intent.latest_charge)).amount_refunded == 0
    stripe_server.set_faults(refund_pending_rate=0)
    again = client.v1.refunds.create(params={"payment_intent": intent.id})
    listed = client.v1.refunds.list(params={"payment_intent": intent.id}).data
    assert [(r.id, r.status) for r in listed] == [(again.id, "succeeded"), (refund.id, "failed")]
    assert stripe_server.ledger()[0]["amount_refunded"] == 2000


def test_the_dashboard_settles_a_pending_refund_at_once(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    intent = pay(client)
    refund = stripe_server.refund_from_dashboard(intent.id, 700, status="pending")
    assert stripe_server.settle_refund(refund["id"], "failed")["status"] == "failed"
    with pytest.raises(ValueError, match="only pending refunds settle"):
        stripe_server.settle_refund(refund["id"], "succeeded")


def test_a_charge_carries_the_intents_metadata_and_its_refunds(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    intent = pay(client)
    refund = client.v1.refunds.create(params={"charge": str(intent.latest_charge)})
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (charge.object, charge.payment_intent, charge.amount, charge.amount_refunded) == (
        "charge",
        intent.id,
        2000,
        2000,
    )
    assert charge.metadata.to_dict() == intent.metadata.to_dict()
    assert (charge.refunded, charge.disputed, charge.status) == (True, False, "succeeded")
    assert charge.refunds is not None and [r.id for r in charge.refunds.data] == [refund.id]
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.retrieve("ch_nope")
    assert missing.value.http_status == 404


def test_a_dashboard_refund_is_checked_like_an_api_refund_and_emits_the_same_events(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    intent = pay(client)
    refund = stripe_server.refund_from_dashboard(intent.id, amount=500)
    assert (refund["status"], refund["amount"], refund["payment_intent"]) == ("succeeded", 500, intent.id)
    with pytest.raises(ValueError, match="400.*amount_too_large"):
        stripe_server.refund_from_dashboard(intent.id, amount=1501)
    refunded = [e for e in stripe_server.events() if e["type"] == "charge.refunded"]
    assert [e["data"]["object"]["metadata"]["order_id"] for e in refunded] == [intent.metadata["order_id"]]
    assert types_about(stripe_server, refund["id"]) == ["refund.created"]


def test_a_lost_dispute_withdraws_the_money_and_blocks_refunds(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    intent = pay(client)
    dispute = stripe_server.open_dispute(intent.id)
    assert (dispute["status"], dispute["amount"], dispute["reason"]) == ("needs_response", 2000, "fraudulent")
    assert client.v1.charges.retrieve(str(intent.latest_charge)).disputed is True
    closed = stripe_server.close_dispute(dispute["id"], "lost")
    assert closed["status"] == "lost"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"
    [entry] = stripe_server.ledger()
    assert entry["disputes"] == [{"id": dispute["id"], "amount": 2000, "status": "lost"}]
    assert entry["amount_lost_to_disputes"] == 2000
    assert types_about(stripe_server, dispute["id"]) == ["charge.dispute.created", "charge.dispute.closed"]


def test_webhooks_are_signed_events_a_real_endpoint_verifies(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, receiver: Receiver
) -> None:
    assert stripe_server.configure_webhooks(receiver.url, SECRET)["url"] == receiver.url
    intent = pay(client)
    events = eventually(lambda: _count(receiver.verified(), 3))
    assert [e.type for e in events] == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]
    assert events[-1].data.object["id"] == intent.id and events[-1].api_version == "2024-06-20"
    delivered = eventually(lambda: _count([e for e in stripe_server.events() if e["delivery"]["delivered"]], 3))
    assert all(e["delivery"]["last_status"] == 200 for e in delivered)


def _count(items: list[T], n: int) -> list[T]:
    assert len(items) == n
    return items


def test_a_failed_delivery_is_retried_with_backoff_until_it_is_accepted(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, receiver: Receiver
) -> None:
    stripe_server.set_faults(webhook_retry_base_s=0.05)
    receiver.statuses = [500]
    client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    [event] = eventually(lambda: _count(receiver.verified(), 1))
    # The server records the delivery once it has read the answer, a moment after the receiver verified it
    [record] = eventually(lambda: _count([e for e in stripe_server.events() if e["delivery"]["delivered"]], 1))
    assert (event.id, record["delivery"]["attempts"]) == (record["id"], 2)


def test_delivery_is_given_up_after_the_last_attempt(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, receiver: Receiver
) -> None:
    stripe_server.set_faults(webhook_retry_base_s=0.02, webhook_max_attempts=3)
    receiver.statuses = [500] * 10
    client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    [record] = eventually(lambda: _given_up(stripe_server.events()))
    assert (record["delivery"]["attempts"], record["delivery"]["last_status"]) == (3, 500)
    assert receiver.verified() == []


def _given_up(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert events and all(e["delivery"]["given_up"] for e in events)
    return events


def test_late_webhooks_arrive_out_of_order(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, receiver: Receiver
) -> None:
    stripe_server.set_faults(webhook_delay_s=0.3)
    for _ in range(4):
        pay(client)
    emitted = [e["id"] for e in stripe_server.events()]
    assert not all(e["delivery"]["delivered"] for e in stripe_server.events())
    arrived = [e.id for e in eventually(lambda: _count(receiver.verified(), len(emitted)))]
    assert sorted(arrived) == sorted(emitted) and arrived != emitted


def test_disabled_webhooks_are_recorded_but_not_sent(
    client: stripe.StripeClient, stripe_server: FakeStripeServer, receiver: Receiver
) -> None:
    stripe_server.disable_webhooks()
    client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    [record] = stripe_server.events()
    assert (record["pending_webhooks"], record["delivery"]["url"], record["delivery"]["attempts"]) == (0, None, 0)


def test_a_reset_turns_webhooks_off_unless_the_environment_set_them(
    stripe_server: FakeStripeServer, endpoint: Receiver
) -> None:
    stripe_server.configure_webhooks(endpoint.url, SECRET)
    stripe_server.reset()
    assert requests.get(f"{stripe_server.url}/_control/webhooks", timeout=5).json()["url"] is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FAKE_STRIPE_WEBHOOK_URL": endpoint.url, "FAKE_STRIPE_WEBHOOK_SECRET": SECRET}
    command = [sys.executable, "-m", "scripts.fake_stripe", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        with requests.Session() as http:
            base = f"http://127.0.0.1:{port}"
            eventually(lambda: http.post(f"{base}/_control/reset", timeout=1).raise_for_status(), seconds=10)
            assert http.get(f"{base}/_control/webhooks", timeout=5).json()["url"] == endpoint.url
            headers = {"Authorization": f"Bearer {API_KEY}"}
            http.post(f"{base}/v1/payment_intents", data={"amount": 100, "currency": "usd"}, headers=headers, timeout=5)
        [event] = eventually(lambda: _count(endpoint.verified(), 1))
        assert event.type == "payment_intent.created"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_new_knobs_are_read_from_the_environment_and_reset_restores_them(stripe_server: FakeStripeServer) -> None:
    env = {
        "FAKE_STRIPE_SEARCH_LAG_S": "1.5",
        "FAKE_STRIPE_WEBHOOK_MAX_ATTEMPTS": "3",
        "FAKE_STRIPE_REFUND_PENDING_RATE": "1",
    }
    assert Faults.from_env(env) == Faults(search_lag_s=1.5, webhook_max_attempts=3, refund_pending_rate=1)
    target = WebhookTarget.from_env(
        {"FAKE_STRIPE_WEBHOOK_URL": "http://127.0.0.1:9/x", "FAKE_STRIPE_WEBHOOK_SECRET": "s"}
    )
    assert target == WebhookTarget("http://127.0.0.1:9/x", "s") and WebhookTarget.from_env({}) is None
    assert stripe_server.set_faults(processing_rate=0.5)["processing_rate"] == 0.5
    with pytest.raises(ValueError, match="400"):
        stripe_server.set_faults(requires_action_rate=0.6)
    stripe_server.reset()
    assert stripe_server.set_faults() == Faults().to_dict()


def _background_threads() -> int:
    return sum(t.name in THREADS for t in threading.enumerate())


def test_stopping_the_server_stops_its_background_threads() -> None:
    before = _background_threads()
    with FakeStripeServer(webhooks=WebhookTarget("http://127.0.0.1:9/", SECRET)):
        assert _background_threads() == before + 2
    assert _background_threads() == before

"""The loopback Stripe, driven only through the real `stripe` SDK: wire formats, idempotency, faults, ledger."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from scripts.fake_stripe import FakeStripeServer, Faults

API_KEY = "sk_test_fake_stripe"
ROOT = Path(__file__).resolve().parents[2]


Connect = Callable[..., stripe.StripeClient]


@pytest.fixture
def connect(stripe_server: FakeStripeServer) -> Iterator[Connect]:
    """Make SDK clients (own HTTP sessions, closed after the test so no socket is left to the GC)."""
    sessions: list[requests.Session] = []

    def make(api_key: str = API_KEY, timeout_s: float = 2.0, url: str | None = None) -> stripe.StripeClient:
        sessions.append(requests.Session())
        http = stripe.RequestsClient(timeout=timeout_s, session=sessions[-1])
        return stripe.StripeClient(
            api_key, base_addresses={"api": url or stripe_server.url}, max_network_retries=0, http_client=http
        )

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def client(connect: Connect) -> stripe.StripeClient:
    return connect()


def create(client: stripe.StripeClient, key: str | None = None, **params: Any) -> stripe.PaymentIntent:
    body: dict[str, Any] = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    body.update(params)
    return client.v1.payment_intents.create(params=body, options={"idempotency_key": key} if key else None)  # type: ignore[arg-type]


def test_a_confirmed_intent_with_a_good_card_succeeds_with_its_charge(client: stripe.StripeClient) -> None:
    intent = create(client, metadata={"order_id": "o-1"}, automatic_payment_methods={"enabled": True})
    assert intent.object == "payment_intent" and intent.id.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received, intent.currency) == ("succeeded", 1999, 1999, "usd")
    assert intent.metadata.to_dict() == {"order_id": "o-1"}
    assert isinstance(intent.latest_charge, str) and intent.latest_charge.startswith("ch_")
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_an_unconfirmed_intent_can_be_confirmed_later(client: stripe.StripeClient) -> None:
    intent = create(client, confirm=False, payment_method="pm_card_mastercard")
    assert intent.status == "requires_confirmation"
    assert client.v1.payment_intents.confirm(intent.id).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_a_declined_card_is_a_card_error_and_leaves_the_intent_needing_a_payment_method(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.CardError) as caught:
        create(client, payment_method="pm_card_chargeDeclinedInsufficientFunds")
    error = caught.value.error
    assert caught.value.http_status == 402 and caught.value.code == "card_declined"
    assert error is not None and error.decline_code == "insufficient_funds"
    assert error.payment_intent is not None
    stored = client.v1.payment_intents.retrieve(error.payment_intent.id)
    assert stored.status == "requires_payment_method"
    assert stored.last_payment_error is not None and stored.last_payment_error.decline_code == "insufficient_funds"


def test_an_unknown_payment_method_or_parameter_is_an_invalid_request(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        create(client, payment_method="pm_card_nonexistent")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        create(client, amout=5)
    assert (missing.value.code, missing.value.param) == ("resource_missing", "payment_method")
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "amout")


def test_an_unknown_id_is_a_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.retrieve("pi_nope")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


@pytest.mark.parametrize("api_key", ["", "sk_live_real_money", "rk_test_restricted"])
def test_requests_without_a_test_secret_key_are_unauthorized(connect: Connect, api_key: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        connect(api_key).v1.payment_intents.retrieve("pi_x")
    assert caught.value.http_status == 401


def test_the_same_key_and_params_replay_the_saved_response(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    first, second = create(client, "key-1"), create(client, "key-1")
    assert first.id == second.id
    assert first.last_response is not None and second.last_response is not None
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_server.ledger()) == 1


def test_a_replayed_decline_is_the_same_decline(client: stripe.StripeClient, stripe_server: FakeStripeServer) -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as caught:
            create(client, "key-d", payment_method="pm_card_chargeDeclinedExpiredCard")
        errors.append(caught.value)
    assert errors[0].json_body == errors[1].json_body
    assert (errors[1].headers or {}).get("Idempotent-Replayed") == "true"
    assert len(stripe_server.ledger()) == 1


def test_the_same_key_with_other_params_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    create(client, "key-2", amount=1000)
    with pytest.raises(stripe.IdempotencyError) as caught:
        create(client, "key-2", amount=2000)
    assert caught.value.http_status == 400


def test_idempotency_keys_are_scoped_to_the_api_key(connect: Connect, stripe_server: FakeStripeServer) -> None:
    mine, theirs = connect(), connect("sk_test_other")
    assert create(mine, "shared").id != create(theirs, "shared").id
    assert len(stripe_server.ledger()) == 2


def test_concurrent_requests_with_one_key_are_serialized_into_one_intent(
    connect: Connect, stripe_server: FakeStripeServer
) -> None:
    clients = [connect() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda c: create(c, "racing").id, clients))
    assert len(ids) == 1
    assert len(stripe_server.ledger()) == 1


def test_search_finds_intents_by_metadata_newest_first(client: stripe.StripeClient) -> None:
    older = create(client, metadata={"order_id": "o'1"})
    newer = create(client, metadata={"order_id": "o'1"})
    create(client, metadata={"order_id": "o-2"})
    result = client.v1.payment_intents.search(params={"query": "metadata['order_id']:'o\\'1'"})
    assert result["object"] == "search_result"
    assert [i.id for i in result.data] == [newer.id, older.id]


def test_refunds_cover_what_was_charged_and_no_more(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    intent = create(client, amount=3000)
    part = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1000})
    assert (part.object, part.status, part.amount, part.charge) == ("refund", "succeeded", 1000, intent.latest_charge)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 2001})
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert (too_much.value.code, rest.amount, again.value.code) == ("amount_too_large", 2000, "charge_already_refunded")
    assert client.v1.refunds.retrieve(part.id).amount == 1000
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent.id}).data] == [rest.id, part.id]
    [entry] = stripe_server.ledger()
    assert (entry["amount_received"], entry["amount_refunded"]) == (3000, 3000)


def test_injected_server_errors_and_rate_limits_apply_nothing(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(error_rate=1.0)
    with pytest.raises(stripe.APIError) as server_error:
        create(client, "k")
    stripe_server.set_faults(error_rate=0.0, rate_limit_rate=1.0)
    with pytest.raises(stripe.RateLimitError):
        create(client, "k")
    assert server_error.value.http_status == 500
    assert stripe_server.ledger() == []
    stripe_server.set_faults(rate_limit_rate=0.0)
    assert create(client, "k").status == "succeeded"


def test_an_injected_timeout_applies_the_request_but_withholds_the_answer(
    connect: Connect, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(timeout_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        create(connect(timeout_s=0.3), "slow")
    [entry] = stripe_server.ledger()
    assert entry["status"] == "succeeded"
    stripe_server.set_faults(timeout_rate=0.0)
    assert create(connect(), "slow").id == entry["id"]


def test_faults_follow_the_seed(client: stripe.StripeClient, stripe_server: FakeStripeServer) -> None:
    def pattern() -> list[bool]:
        stripe_server.set_faults(error_rate=0.5, seed=42)
        outcomes = []
        for _ in range(16):
            try:
                client.v1.refunds.list()
                outcomes.append(True)
            except stripe.APIError:
                outcomes.append(False)
        return outcomes

    first = pattern()
    assert first == pattern()
    assert 0 < first.count(False) < 16


def test_latency_slows_every_request(client: stripe.StripeClient, stripe_server: FakeStripeServer) -> None:
    stripe_server.set_faults(latency_ms=150)
    started = time.monotonic()
    client.v1.refunds.list()
    assert time.monotonic() - started >= 0.15


def test_control_endpoints_refuse_unknown_or_impossible_faults(stripe_server: FakeStripeServer) -> None:
    for settings in ({"error_rat": 1}, {"error_rate": 0.7, "timeout_rate": 0.7}):
        with pytest.raises(ValueError, match="400"):
            stripe_server.set_faults(**settings)
    assert stripe_server.set_faults()["error_rate"] == 0.0


def test_faults_are_read_from_the_environment() -> None:
    env = {"FAKE_STRIPE_ERROR_RATE": "0.1", "FAKE_STRIPE_TIMEOUT_RATE": "0.2", "FAKE_STRIPE_LATENCY_MS": "5"}
    assert Faults.from_env(env) == Faults(error_rate=0.1, timeout_rate=0.2, latency_ms=5)


def test_the_module_runs_as_a_server_with_faults_from_its_environment(connect: Connect) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FAKE_STRIPE_RATE_LIMIT_RATE": "1"}
    command = [sys.executable, "-m", "scripts.fake_stripe", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    client = connect(url=f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.v1.refunds.list()
            except stripe.APIConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "server did not come up"
                time.sleep(0.05)
                continue
            except stripe.RateLimitError:
                break
            pytest.fail("the injected rate limit did not apply")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_ledger_lists_every_intent_with_its_order(
    client: stripe.StripeClient, stripe_server: FakeStripeServer
) -> None:
    order = str(uuid.uuid4())
    create(client, metadata={"order_id": order})
    with pytest.raises(stripe.CardError):
        create(client, metadata={"order_id": order}, payment_method="pm_card_chargeDeclined")
    ledger = [e for e in stripe_server.ledger() if e["metadata"].get("order_id") == order]
    assert sorted(e["status"] for e in ledger) == ["requires_payment_method", "succeeded"]
    assert sum(e["status"] == "succeeded" for e in ledger) == 1

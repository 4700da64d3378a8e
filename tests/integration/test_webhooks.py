"""POST /v1/webhooks/stripe against the real test Postgres, with bodies signed the way Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text
from tenacity import Retrying, stop_after_delay, wait_fixed

from api.app import create_app
from models.db import engine_for, unit_of_work
from models.status import PaymentStatus
from pipeline import ledger as payment_ledger
from pipeline.order_store import lock_order
from tests.api_helpers import api_settings, assert_error
from tests.conftest import Servers
from tests.factories import make_order, make_product

SECRET = f"whsec_{secrets.token_hex(16)}"
PATH = "/v1/webhooks/stripe"
AMOUNT = 2500  # two mugs at 1250


def webhook_app(servers: Servers, db_url: str, secret: str | None) -> FastAPI:
    """The API with this signing secret (none: the webhook route is not served)."""
    return create_app(api_settings(db_url, servers.redis_url, stripe_webhook_secret=secret and SecretStr(secret)))


@pytest.fixture
def stripe_hook(servers: Servers, db_url: str) -> Iterator[TestClient]:
    with TestClient(webhook_app(servers, db_url, SECRET)) as client:
        yield client


def signature(payload: str, secret: str = SECRET, at: int | None = None) -> str:
    """A Stripe-Signature header: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`."""
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(kind: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """A Stripe event body as Stripe serialises it."""
    body = {"id": event_id or f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": data}}
    return json.dumps(body)


def intent_event(kind: str, order_id: uuid.UUID | str | None, intent_id: str) -> str:
    metadata = {"order_id": str(order_id)} if order_id else {}
    return event(f"payment_intent.{kind}", {"id": intent_id, "object": "payment_intent", "metadata": metadata})


def refund_event(
    order_id: uuid.UUID | None, intent_id: str, amount: int, status: str = "succeeded", refund_id: str | None = None
) -> str:
    """A refund.updated event: one refund of the intent, with its status (the saga's own when tagged with the order)."""
    metadata = {"order_id": str(order_id), "origin": "orderflow"} if order_id else {}
    refund = {
        "id": refund_id or f"re_{uuid.uuid4().hex}",
        "object": "refund",
        "payment_intent": intent_id,
        "amount": amount,
        "status": status,
        "metadata": metadata,
    }
    return event("refund.updated", refund)


def deliver(client: TestClient, payload: str, header: str | None = None) -> Any:
    """POST the payload signed as Stripe would (or with the given Stripe-Signature header); the response."""
    headers = {"Content-Type": "application/json", "Stripe-Signature": header or signature(payload)}
    return client.post(PATH, content=payload, headers=headers)


def accepted(client: TestClient, payload: str) -> dict[str, Any]:
    response = deliver(client, payload)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def make_payment(db_url: str, status: str = "in_doubt", intent_id: str | None = None, refunded: int = 0) -> uuid.UUID:
    """A pending order and its payment row in `status`; returns the order id."""
    order_id = make_order(db_url, [(make_product(db_url), 2)])
    with unit_of_work(db_url) as session:
        session.execute(
            text(
                "INSERT INTO payments (order_id, idempotency_key, intent_id, amount_cents, currency, status,"
                " refunded_cents) VALUES (:order, :key, :intent, :amount, 'USD', :status, :refunded)"
            ),
            {
                "order": order_id,
                "key": f"{order_id}:charge_payment",
                "intent": intent_id,
                "amount": AMOUNT,
                "status": status,
                "refunded": refunded,
            },
        )
    return order_id


def ledger(db_url: str, order_id: uuid.UUID) -> dict[str, Any]:
    query = text("SELECT status, intent_id, refunded_cents, error FROM payments WHERE order_id = :order")
    with unit_of_work(db_url) as session:
        return dict(session.execute(query, {"order": order_id}).mappings().one())


def recorded(db_url: str) -> list[tuple[str, str]]:
    """The (id, type) of every event in webhook_events."""
    with unit_of_work(db_url) as session:
        return [(row.id, row.type) for row in session.execute(text("SELECT id, type FROM webhook_events"))]


def order_status(db_url: str, order_id: uuid.UUID) -> str:
    with unit_of_work(db_url) as session:
        return str(session.scalar(text("SELECT status FROM orders WHERE id = :id"), {"id": order_id}))


def intent() -> str:
    return f"pi_{uuid.uuid4().hex}"


def test_a_signed_succeeded_event_marks_an_in_doubt_payment_succeeded_and_leaves_the_order_alone(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id, pi = make_payment(db_url, "in_doubt"), intent()
    payload = intent_event("succeeded", order_id, pi)

    assert accepted(stripe_hook, payload) == {"received": True}

    assert ledger(db_url, order_id) | {"error": None} == {
        "status": "succeeded",
        "intent_id": pi,
        "refunded_cents": 0,
        "error": None,
    }
    assert order_status(db_url, order_id) == "pending"  # the saga's reconcile moves the order, not the webhook
    assert recorded(db_url) == [(json.loads(payload)["id"], "payment_intent.succeeded")]


def test_a_succeeded_event_without_metadata_finds_its_payment_by_intent_id(
    stripe_hook: TestClient, db_url: str
) -> None:
    pi = intent()
    order_id = make_payment(db_url, "started", intent_id=pi)

    accepted(stripe_hook, intent_event("succeeded", None, pi))

    assert ledger(db_url, order_id)["status"] == "succeeded"


def test_the_same_event_delivered_twice_is_recorded_once_and_the_redelivery_changes_nothing(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id = make_payment(db_url, "in_doubt")
    payload = intent_event("succeeded", order_id, intent())
    accepted(stripe_hook, payload)
    # Given the ledger moved back by hand, applying the event again would show; the redelivery must not apply it.
    with unit_of_work(db_url) as session:
        session.execute(text("UPDATE payments SET status = 'in_doubt' WHERE order_id = :o"), {"o": order_id})

    assert accepted(stripe_hook, payload) == {"received": True, "duplicate": True}

    assert ledger(db_url, order_id)["status"] == "in_doubt"
    assert len(recorded(db_url)) == 1


def test_the_same_event_delivered_concurrently_is_applied_by_exactly_one_delivery(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id = make_payment(db_url, "in_doubt")
    payload = intent_event("succeeded", order_id, intent())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: accepted(stripe_hook, payload), range(8)))

    assert sorted(answer.get("duplicate", False) for answer in answers) == [False] + [True] * 7
    assert ledger(db_url, order_id)["status"] == "succeeded"
    assert len(recorded(db_url)) == 1


def test_a_payment_failed_event_declines_an_unsettled_payment_with_stripes_reason(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id = make_payment(db_url, "started")
    failed = json.loads(intent_event("payment_failed", order_id, intent()))
    failed["data"]["object"]["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}

    accepted(stripe_hook, json.dumps(failed))

    assert ledger(db_url, order_id) | {"intent_id": None} == {
        "status": "declined",
        "intent_id": None,
        "refunded_cents": 0,
        "error": "Your card was declined.",
    }


def test_a_payment_failed_event_after_success_does_not_downgrade_the_payment(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id, pi = make_payment(db_url, "in_doubt"), intent()
    accepted(stripe_hook, intent_event("succeeded", order_id, pi))

    accepted(stripe_hook, intent_event("payment_failed", order_id, pi))

    assert ledger(db_url, order_id)["status"] == "succeeded"
    assert ledger(db_url, order_id)["intent_id"] == pi


def test_a_succeeded_event_after_a_decline_corrects_the_ledger_because_the_provider_is_the_truth(
    stripe_hook: TestClient, db_url: str
) -> None:
    # A success Stripe reports means money was taken, whatever we concluded before; the order is not cancelled
    # here, so nothing else moves (a cancelled one would be refunded: see test_money_edges).
    order_id, pi = make_payment(db_url, "declined"), intent()

    accepted(stripe_hook, intent_event("succeeded", order_id, pi))

    assert (ledger(db_url, order_id)["status"], ledger(db_url, order_id)["intent_id"]) == ("succeeded", pi)


def test_refunds_add_up_by_id_and_a_repeated_or_older_event_never_lowers_them(
    stripe_hook: TestClient, db_url: str
) -> None:
    pi = intent()
    order_id = make_payment(db_url, "succeeded", intent_id=pi)

    accepted(stripe_hook, refund_event(order_id, pi, 1000, refund_id="re_a"))
    assert ledger(db_url, order_id)["refunded_cents"] == 1000

    accepted(stripe_hook, refund_event(order_id, pi, 1000, refund_id="re_a"))
    accepted(stripe_hook, refund_event(order_id, pi, 1000, "pending", refund_id="re_a"))  # older, arriving late
    accepted(stripe_hook, refund_event(order_id, pi, 400, refund_id="re_b"))
    assert ledger(db_url, order_id)["refunded_cents"] == 1400
    assert len(recorded(db_url)) == 4


def test_a_pending_or_failed_refund_gives_nothing_back_in_the_ledger(stripe_hook: TestClient, db_url: str) -> None:
    pi = intent()
    order_id = make_payment(db_url, "succeeded", intent_id=pi)

    accepted(stripe_hook, refund_event(order_id, pi, 1000, "pending", refund_id="re_a"))
    assert ledger(db_url, order_id)["refunded_cents"] == 0
    accepted(stripe_hook, refund_event(order_id, pi, 1000, "succeeded", refund_id="re_a"))
    assert ledger(db_url, order_id)["refunded_cents"] == 1000
    accepted(stripe_hook, refund_event(order_id, pi, 1000, "failed", refund_id="re_a"))  # refunds can fail later
    assert ledger(db_url, order_id)["refunded_cents"] == 0


def test_refunds_above_the_charge_are_capped_at_the_amount_charged(stripe_hook: TestClient, db_url: str) -> None:
    pi = intent()
    order_id = make_payment(db_url, "succeeded", intent_id=pi)

    accepted(stripe_hook, refund_event(order_id, pi, AMOUNT))
    accepted(stripe_hook, refund_event(order_id, pi, 1))

    assert ledger(db_url, order_id)["refunded_cents"] == AMOUNT


def test_a_refund_ahead_of_its_payments_success_is_refused_unrecorded_so_stripe_redelivers_it(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id = make_payment(db_url, "in_doubt")

    response = deliver(stripe_hook, refund_event(order_id, intent(), 1000))

    assert_error(response, 409, "PAYMENT_NOT_SETTLED")
    assert ledger(db_url, order_id) | {"error": None} == {
        "status": "in_doubt",
        "intent_id": None,
        "refunded_cents": 0,
        "error": None,
    }
    assert recorded(db_url) == []


def test_a_refund_of_a_declined_payment_is_recorded_and_changes_nothing(stripe_hook: TestClient, db_url: str) -> None:
    order_id = make_payment(db_url, "declined")

    accepted(stripe_hook, refund_event(order_id, intent(), 1000))

    assert ledger(db_url, order_id)["refunded_cents"] == 0
    assert len(recorded(db_url)) == 1


@pytest.mark.parametrize("events", list(itertools.permutations(["succeeded", "refund 400", "refund 1000"])))
def test_events_in_any_order_end_in_the_same_state_as_in_order(
    stripe_hook: TestClient, db_url: str, events: tuple[str, ...]
) -> None:
    order_id, pi = make_payment(db_url, "in_doubt"), intent()
    bodies = {
        "succeeded": intent_event("succeeded", order_id, pi),
        "refund 400": refund_event(order_id, pi, 400),
        "refund 1000": refund_event(order_id, pi, 1000),
    }
    pending = [bodies[name] for name in events]

    for _ in range(len(pending)):  # Stripe redelivers what was not answered 2xx
        pending = [body for body in pending if deliver(stripe_hook, body).status_code != 200]

    assert pending == []
    assert ledger(db_url, order_id) | {"error": None} == {
        "status": "succeeded",
        "intent_id": pi,
        "refunded_cents": 1400,
        "error": None,
    }
    assert len(recorded(db_url)) == 3


def test_an_unknown_event_type_is_recorded_and_answered_200_without_changes(
    stripe_hook: TestClient, db_url: str
) -> None:
    order_id = make_payment(db_url, "in_doubt")
    payload = event("customer.created", {"id": "cus_1", "object": "customer", "metadata": {"order_id": str(order_id)}})

    assert accepted(stripe_hook, payload) == {"received": True}

    assert ledger(db_url, order_id)["status"] == "in_doubt"
    assert recorded(db_url) == [(json.loads(payload)["id"], "customer.created")]


@pytest.mark.parametrize(
    "payload",
    [
        intent_event("succeeded", uuid.uuid4(), "pi_unknown_order"),
        intent_event("succeeded", None, "pi_unknown_intent"),
        intent_event("payment_failed", "not-an-order-id", "pi_unknown_too"),
        event("charge.refunded", {"id": "ch_legacy", "object": "charge", "payment_intent": None, "amount_refunded": 5}),
    ],
    ids=["succeeded-unknown-order", "succeeded-unknown-intent", "failed-bad-order-id", "no-intent"],
)
def test_an_event_for_an_unknown_payment_is_recorded_and_answered_200_without_changes(
    stripe_hook: TestClient, db_url: str, payload: str
) -> None:
    order_id = make_payment(db_url, "in_doubt")

    assert accepted(stripe_hook, payload) == {"received": True}

    assert ledger(db_url, order_id) | {"error": None} == {
        "status": "in_doubt",
        "intent_id": None,
        "refunded_cents": 0,
        "error": None,
    }
    assert len(recorded(db_url)) == 1


def test_an_unknown_refund_is_redelivered_while_a_charge_is_in_doubt_and_ignored_otherwise(
    stripe_hook: TestClient, db_url: str
) -> None:
    # It may be a refund of the charge whose answer we lost: its intent id is not known to us until that settles.
    order_id = make_payment(db_url, "in_doubt")
    assert_error(deliver(stripe_hook, refund_event(None, "pi_unknown", 500)), 409, "PAYMENT_NOT_SETTLED")

    accepted(stripe_hook, intent_event("payment_failed", order_id, intent()))
    assert accepted(stripe_hook, refund_event(None, "pi_unknown", 500)) == {"received": True}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=notanumber,v1=abc",
        "PAYLOAD-SIGNED-WITH:whsec_wrong",
        "PAYLOAD-SIGNED-AT:-301",
        "PAYLOAD-SIGNED-AS-V0",
    ],
    ids=["missing", "empty", "garbage", "bad-timestamp", "wrong-secret", "stale", "wrong-scheme"],
)
def test_a_bad_signature_is_refused_400_and_nothing_is_written(
    stripe_hook: TestClient, db_url: str, header: str | None
) -> None:
    order_id = make_payment(db_url, "in_doubt")
    payload = intent_event("succeeded", order_id, intent())
    headers = {"Content-Type": "application/json"}
    if header == "PAYLOAD-SIGNED-WITH:whsec_wrong":
        header = signature(payload, secret="whsec_wrong")
    elif header == "PAYLOAD-SIGNED-AT:-301":
        header = signature(payload, at=int(time.time()) - 301)
    elif header == "PAYLOAD-SIGNED-AS-V0":
        header = signature(payload).replace("v1=", "v0=")
    if header is not None:
        headers["Stripe-Signature"] = header

    response = stripe_hook.post(PATH, content=payload, headers=headers)

    assert_error(response, 400, "INVALID_SIGNATURE")
    assert ledger(db_url, order_id)["status"] == "in_doubt"
    assert recorded(db_url) == []


def test_a_body_changed_after_signing_is_refused_400(stripe_hook: TestClient, db_url: str) -> None:
    order_id = make_payment(db_url, "in_doubt")
    payload = intent_event("succeeded", order_id, intent())

    response = deliver(stripe_hook, payload.replace("succeeded", "payment_failed"), signature(payload))

    assert_error(response, 400, "INVALID_SIGNATURE")
    assert ledger(db_url, order_id)["status"] == "in_doubt"
    assert recorded(db_url) == []


@pytest.mark.parametrize(
    "payload",
    [
        "{not json",
        "[]",
        "null",
        '"evt_1"',
        json.dumps({"object": "event", "type": "charge.refunded", "data": {"object": {}}}),
        json.dumps({"id": "evt_1", "type": "charge.refunded", "data": "not an object"}),
        json.dumps({"id": "evt_" + "x" * 300, "type": "charge.refunded", "data": {"object": {}}}),
        event("payment_intent.succeeded", {"object": "payment_intent"}),
        event("refund.updated", {"id": "re_1", "payment_intent": "pi_1", "amount": -5, "status": "succeeded"}),
    ],
    ids=[
        "malformed",
        "array",
        "null",
        "string",
        "no-id",
        "data-not-object",
        "id-too-long",
        "intent-no-id",
        "negative-refund",
    ],
)
def test_a_signed_body_that_is_not_a_usable_event_is_refused_400_invalid_payload(
    stripe_hook: TestClient, db_url: str, payload: str
) -> None:
    response = deliver(stripe_hook, payload)

    assert_error(response, 400, "INVALID_PAYLOAD")
    assert recorded(db_url) == []


def test_a_body_that_is_not_utf8_is_refused_400_invalid_payload(stripe_hook: TestClient, db_url: str) -> None:
    response = stripe_hook.post(PATH, content=b'{"id": "\xff"}', headers={"Stripe-Signature": "t=1,v1=00"})

    assert_error(response, 400, "INVALID_PAYLOAD")
    assert recorded(db_url) == []


@pytest.mark.parametrize("secret", [None, "  "], ids=["unset", "blank"])
def test_without_a_signing_secret_the_webhook_route_is_not_served(
    servers: Servers, db_url: str, secret: str | None
) -> None:
    payload = event("customer.created", {"id": "cus_1"})
    with TestClient(webhook_app(servers, db_url, secret)) as client:
        response = deliver(client, payload, signature(payload, secret="whsec_anything"))
        paths = client.get("/openapi.json").json()["paths"]

    assert_error(response, 404, "NOT_FOUND")
    assert "/v1/webhooks/stripe" not in paths
    assert recorded(db_url) == []


def wait_until_a_transaction_waits_for_a_lock(db_url: str) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.05), reraise=True):
        with attempt, engine_for(db_url).connect() as connection:
            assert connection.scalar(waiting), "the event's transaction never waited for a lock"


@pytest.mark.parametrize(
    ("kind", "settled"), [("succeeded", "succeeded"), ("processing", "pending"), ("payment_failed", "declined")]
)
def test_a_payment_event_waits_for_a_step_holding_the_order_and_never_deadlocks_with_its_ledger_write(
    stripe_hook: TestClient, db_url: str, kind: str, settled: str
) -> None:
    # The charge step holds the order's row lock and records the provider's answer on a side connection
    # (ledger.mark). An event that locked the payment row first and then waited for the order would hang both,
    # where Postgres cannot see it: the step's transaction only sits idle, waiting for its own thread.
    order_id, pi = make_payment(db_url, "started"), intent()
    with ThreadPoolExecutor(2) as pool, engine_for(db_url).connect() as step:
        step_transaction = step.begin()
        lock_order(step, order_id)
        event = pool.submit(accepted, stripe_hook, intent_event(kind, order_id, pi))
        wait_until_a_transaction_waits_for_a_lock(db_url)
        with engine_for(db_url).connect() as reading:
            entry = payment_ledger.find(reading, order_id, lock=False)
        assert entry is not None
        side_write = pool.submit(payment_ledger.mark, db_url, entry, PaymentStatus.IN_DOUBT, "the answer was lost")
        try:
            side_write.result(timeout=10)  # deadlocked: TimeoutError, and the rollback below frees both
        finally:
            step_transaction.rollback()
        assert event.result(timeout=10) == {"received": True}

    assert ledger(db_url, order_id)["status"] == settled  # the event came after the step's write, and won

"""Money at the provider's edges: lagging search, pending intents, outside refunds, disputes, failed refunds.

Each test drives one order step by step against the loopback Stripe (through the real SDK) and the local carrier,
and delivers the provider's own events, signed, to the real webhook route, as Stripe would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
import stripe as stripe_sdk
from fastapi.testclient import TestClient
from sqlalchemy import text

from models.db import engine_for
from pipeline.adapters import Adapters
from pipeline.audit import audit, violations_only
from pipeline.config import LOCAL_STRIPE_KEY
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.conftest import Servers
from tests.edge_helpers import adapters_for, intent_of, order_row, payment_row, run_steps, run_undos
from tests.factories import make_order, make_product
from tests.integration.test_webhooks import SECRET, signature, webhook_app
from tests.saga_helpers import queued, stock
from workers.operator.actions import retry
from workers.reaper import refund_late_charges
from workers.saga.cancel import cancel_order

Stack = tuple[str, FakeStripeServer, FakeCarrierServer]


@pytest.fixture
def stack(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> Stack:
    return db_url, stripe_server, carrier_server


@pytest.fixture
def hook(servers: Servers, db_url: str) -> Iterator[TestClient]:
    with TestClient(webhook_app(servers, db_url, SECRET)) as client:
        yield client


def deliver_events(client: TestClient, stripe: FakeStripeServer, *types: str) -> None:
    """POST the provider's events of these types to our webhook route, signed, as Stripe delivers them."""
    for event in stripe.events():
        if event["type"] in types:
            body = json.dumps({key: value for key, value in event.items() if key != "delivery"})
            headers = {"Content-Type": "application/json", "Stripe-Signature": signature(body)}
            assert client.post("/v1/webhooks/stripe", content=body, headers=headers).status_code == 200


def paid_order(stack: Stack, *steps: str) -> tuple[uuid.UUID, uuid.UUID]:
    db_url, stripe, carrier = stack
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url), "reserve_stock", "charge_payment", *steps)
    return order_id, product


def kept(stripe: FakeStripeServer, order_id: uuid.UUID) -> int:
    intent = intent_of(stripe.ledger(), order_id)
    return int(intent["amount_received"] - intent["amount_refunded"])


def test_an_in_doubt_charge_cancelled_while_search_lags_is_refunded_not_kept(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url), "reserve_stock")
    stripe.set_faults(timeout_rate=1.0, timeout_delay_s=2, search_lag_s=600)
    with pytest.raises(Exception, match="outcome unknown"):  # the charge went through; its answer did not
        run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url, timeout_s=0.5), "charge_payment")
    stripe.set_faults(timeout_rate=0.0)
    assert payment_row(db_url, order_id)["status"] == "in_doubt"

    cancel_order(db_url, order_id)
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert kept(stripe, order_id) == 0
    assert stock(db_url, product) == (5, 5, 0, 0)
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_an_in_doubt_charge_that_never_reached_stripe_is_cancelled_without_charging_anyone(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url), "reserve_stock")
    with pytest.raises(Exception, match="outcome unknown"):  # Stripe unreachable: the request never arrived
        run_steps(order_id, adapters_for(db_url, "http://127.0.0.1:9", carrier.url, timeout_s=0.5), "charge_payment")

    cancel_order(db_url, order_id)
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert [i["status"] for i in stripe.ledger()] == ["canceled"]  # the probe's placeholder, holding the key
    assert payment_row(db_url, order_id)["status"] == "declined"


def charge_left_processing(stack: Stack) -> tuple[uuid.UUID, Adapters]:
    """A reserved order whose charge Stripe holds `processing`; (order, adapters)."""
    db_url, stripe, carrier = stack
    stripe.set_faults(processing_rate=1.0, processing_delay_s=60)
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 2)])
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    run_steps(order_id, adapters, "reserve_stock")
    with pytest.raises(Exception, match="processing"):
        run_steps(order_id, adapters, "charge_payment")
    return order_id, adapters


def test_a_processing_intent_is_pending_not_declined_and_the_order_goes_on_once_it_succeeds(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    order_id, adapters = charge_left_processing(stack)
    assert (order_row(db_url, order_id)["status"], payment_row(db_url, order_id)["status"]) == ("reserved", "pending")

    stripe.settle_intent(intent_of(stripe.ledger(), order_id)["id"], "succeeded")
    run_steps(order_id, adapters, "charge_payment")

    assert order_row(db_url, order_id)["status"] == "paid"
    assert len([i for i in stripe.ledger() if i["status"] == "succeeded"]) == 1


def test_a_processing_intent_of_a_cancelled_order_is_refunded_once_it_succeeds(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    order_id, adapters = charge_left_processing(stack)
    cancel_order(db_url, order_id)
    with pytest.raises(Exception, match="processing"):  # the refund waits: nothing final to refund yet
        run_undos(order_id, adapters)
    assert order_row(db_url, order_id)["status"] == "compensating"

    stripe.settle_intent(intent_of(stripe.ledger(), order_id)["id"], "succeeded")
    run_undos(order_id, adapters)

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert kept(stripe, order_id) == 0
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_an_intent_that_needs_the_customer_is_cancelled_at_stripe_before_the_order_is(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    run_steps(order_id, adapters, "reserve_stock")
    # An intent waiting for 3-D Secure (made without error_on_requires_action), recorded pending in our ledger.
    client = stripe_sdk.StripeClient(LOCAL_STRIPE_KEY, base_addresses={"api": stripe.url})
    waiting = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            "metadata": {"order_id": str(order_id)},
        }
    )
    assert waiting.status == "requires_action"
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO payments (order_id, idempotency_key, intent_id, amount_cents, currency, status)"
                " VALUES (:o, :k, :i, 2500, 'USD', 'pending')"
            ),
            {"o": order_id, "k": f"{order_id}:charge_payment", "i": waiting.id},
        )

    run_steps(order_id, adapters, "charge_payment")
    run_undos(order_id, adapters)

    assert (order_row(db_url, order_id)["status"], order_row(db_url, order_id)["cancel_reason"]) == (
        "cancelled",
        "PAYMENT_DECLINED",
    )
    assert intent_of(stripe.ledger(), order_id)["status"] == "canceled"  # it can never succeed later
    assert stock(db_url, product) == (5, 5, 0, 0)


def lose_the_charge(db_url: str, order_id: uuid.UUID) -> None:
    """The end state of the old search-lag defect: cancelled, the ledger sure nothing was charged, stock back."""
    cancel_order(db_url, order_id)
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text("UPDATE payments SET status = 'declined', intent_id = NULL WHERE order_id = :o"), {"o": order_id}
        )
    run_undos(order_id, adapters_for(db_url, "http://127.0.0.1:9", "http://127.0.0.1:9"))
    assert order_row(db_url, order_id)["status"] == "cancelled"


def test_a_late_success_event_for_a_cancelled_order_reopens_it_and_refunds_through_the_compensation(
    stack: Stack, hook: TestClient, redis_client: redis.Redis
) -> None:
    db_url, stripe, carrier = stack
    order_id, product = paid_order(stack)
    lose_the_charge(db_url, order_id)

    deliver_events(hook, stripe, "payment_intent.succeeded")

    assert order_row(db_url, order_id)["status"] == "compensating"
    assert [m.actor_name for m in queued(redis_client, "payments")][-1:] == ["refund_payment"]
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))
    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert kept(stripe, order_id) == 0
    assert stock(db_url, product) == (5, 5, 0, 0)


def test_the_reaper_refunds_a_cancelled_order_whose_late_success_event_was_lost(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack)
    cancel_order(db_url, order_id)
    with engine_for(db_url).begin() as connection:  # cancelled with the refund never made (and never learnt of)
        connection.execute(
            text("UPDATE orders SET status = 'cancelled', current_step = NULL WHERE id = :o"), {"o": order_id}
        )

    assert refund_late_charges(db_url) == [order_id]
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert kept(stripe, order_id) == 0


def test_the_reapers_net_reads_the_payments_and_refunds_changed_lately_and_audit_reports_older_kept_money(
    stack: Stack,
) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack)
    with engine_for(db_url).begin() as connection:  # cancelled, the money kept, and nothing changed for 8 days
        connection.execute(
            text(
                "UPDATE orders SET status = 'cancelled', cancel_reason = 'OUT_OF_STOCK', current_step = NULL "
                "WHERE id = :o"
            ),
            {"o": order_id},
        )
        connection.execute(
            text("UPDATE payments SET updated_at = now() - interval '8 days' WHERE order_id = :o"), {"o": order_id}
        )

    assert refund_late_charges(db_url, lookback_s=7 * 86400) == []
    assert violations_only(audit(db_url))["cancelled order kept money"] == [str(order_id)]
    with engine_for(db_url).begin() as connection:  # then a refund of it fails: a change the net reads
        connection.execute(
            text(
                "INSERT INTO refunds (payment_id, provider_refund_id, amount_cents, status, origin) "
                "SELECT id, 're_failed_' || md5(random()::text), amount_cents, 'failed', 'saga' FROM payments "
                "WHERE order_id = :o"
            ),
            {"o": order_id},
        )

    assert refund_late_charges(db_url, lookback_s=7 * 86400) == [order_id]
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))
    assert order_row(db_url, order_id)["status"] == "needs_attention"  # a failed refund is a person's to finish


def test_a_full_refund_from_the_dashboard_before_shipping_cancels_the_order_without_a_second_refund(
    stack: Stack, hook: TestClient
) -> None:
    db_url, stripe, carrier = stack
    order_id, product = paid_order(stack, "confirm")
    stripe.refund_from_dashboard(intent_of(stripe.ledger(), order_id)["id"])
    deliver_events(hook, stripe, "refund.created")

    run_steps(order_id, adapters_for(db_url, stripe.url, carrier.url), "notify")
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))

    row = order_row(db_url, order_id)
    assert (row["status"], row["cancel_reason"]) == ("cancelled", "PAYMENT_REFUNDED")
    assert len(intent_of(stripe.ledger(), order_id)["refunds"]) == 1
    assert stock(db_url, product) == (5, 5, 0, 0)
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_a_dispute_before_shipping_holds_the_order_until_an_operator_resumes_it_after_a_win(
    stack: Stack, hook: TestClient
) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack, "confirm", "notify")
    dispute = stripe.open_dispute(intent_of(stripe.ledger(), order_id)["id"])
    deliver_events(hook, stripe, "charge.dispute.created")
    adapters = adapters_for(db_url, stripe.url, carrier.url)

    run_steps(order_id, adapters, "ship")
    row = order_row(db_url, order_id)
    assert (row["status"], row["current_step"]) == ("needs_attention", "ship")
    assert "PAYMENT_DISPUTED" in row["last_error"]
    assert carrier.ledger() == []

    stripe.close_dispute(dispute["id"], "won")
    deliver_events(hook, stripe, "charge.dispute.closed")
    assert retry(db_url, order_id, dry_run=False, note="dispute won").ok
    run_steps(order_id, adapters, "ship")
    assert order_row(db_url, order_id)["status"] == "shipped"


def test_a_refund_and_a_dispute_after_shipment_are_recorded_and_the_order_stays_shipped(
    stack: Stack, hook: TestClient
) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack, "confirm", "notify", "ship")
    intent = intent_of(stripe.ledger(), order_id)["id"]
    stripe.refund_from_dashboard(intent, amount=500)
    stripe.open_dispute(intent)
    deliver_events(hook, stripe, "refund.created", "charge.dispute.created")

    assert order_row(db_url, order_id)["status"] == "shipped"
    assert payment_row(db_url, order_id)["refunded_cents"] == 500
    found = audit(db_url, stripe.ledger(), carrier.ledger())
    assert violations_only(found) == {}
    assert found["(info) refunded or disputed outside the saga after shipment"] == [str(order_id)]


def test_a_partial_dashboard_refund_racing_the_compensation_refunds_exactly_the_rest(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack)
    stripe.refund_from_dashboard(intent_of(stripe.ledger(), order_id)["id"], amount=1000)  # no event reached us

    cancel_order(db_url, order_id)
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert sorted(r["amount"] for r in intent_of(stripe.ledger(), order_id)["refunds"]) == [1000, 1500]
    assert kept(stripe, order_id) == 0
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def refund_left_pending(stack: Stack) -> tuple[uuid.UUID, Adapters, str]:
    """A cancelled charge whose refund Stripe holds pending; (order, adapters, the refund's id)."""
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack)
    stripe.set_faults(refund_pending_rate=1.0, refund_settle_s=60)
    adapters = adapters_for(db_url, stripe.url, carrier.url)
    cancel_order(db_url, order_id)
    with pytest.raises(Exception, match="pending"):
        run_undos(order_id, adapters)
    [refund] = intent_of(stripe.ledger(), order_id)["refunds"]
    return order_id, adapters, refund["id"]


def test_a_pending_refund_keeps_the_order_compensating_until_stripe_says_it_succeeded(stack: Stack) -> None:
    db_url, stripe, carrier = stack
    order_id, adapters, refund_id = refund_left_pending(stack)
    assert order_row(db_url, order_id)["status"] == "compensating"

    stripe.settle_refund(refund_id, "succeeded")
    run_undos(order_id, adapters)

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert violations_only(audit(db_url, stripe.ledger(), carrier.ledger())) == {}


def test_a_refund_that_fails_parks_the_order_for_an_operator(stack: Stack) -> None:
    db_url, stripe, _ = stack
    order_id, adapters, refund_id = refund_left_pending(stack)
    stripe.settle_refund(refund_id, "failed")

    run_undos(order_id, adapters)

    row = order_row(db_url, order_id)
    assert (row["status"], row["current_step"]) == ("needs_attention", "refund_payment")
    assert "REFUND_FAILED" in row["last_error"]


def test_a_refund_failing_after_the_cancel_parks_the_cancelled_order(stack: Stack, hook: TestClient) -> None:
    db_url, stripe, carrier = stack
    order_id, _ = paid_order(stack)
    cancel_order(db_url, order_id)
    run_undos(order_id, adapters_for(db_url, stripe.url, carrier.url))
    [refund] = intent_of(stripe.ledger(), order_id)["refunds"]
    failed = {
        "id": refund["id"],
        "object": "refund",
        "amount": refund["amount"],
        "status": "failed",
        "payment_intent": intent_of(stripe.ledger(), order_id)["id"],
        "failure_reason": "lost_or_stolen_card",
        "metadata": {"order_id": str(order_id), "origin": "orderflow"},
    }
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "refund.failed", "data": {"object": failed}})

    answer = hook.post("/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": signature(body)})

    assert answer.status_code == 200
    row = order_row(db_url, order_id)
    assert (row["status"], row["current_step"]) == ("needs_attention", "refund_payment")
    assert payment_row(db_url, order_id)["refunded_cents"] == 0

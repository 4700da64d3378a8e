"""A step's message goes on with the order's next steps in its thread; a step that fails at once gets its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import text

from models.db import engine_for
from pipeline import saga
from pipeline.local_providers import LocalRecorder
from pipeline.notify import LocalNotifier
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import adapters_for, order_row
from tests.factories import make_order, make_product
from tests.saga_helpers import count, queued, stock, timeline
from workers.saga.runner import run_actions

QUEUES = sorted(set(saga.SAGA_QUEUES))


def waiting(client: redis.Redis) -> list[tuple[str, str, str]]:
    """(queue, actor, order id) of every saga message, due now or delayed."""
    return [
        (queue, message.actor_name, message.args[0])
        for queue in QUEUES
        for name in (queue, f"{queue}.DQ")
        for message in queued(client, name)
    ]


def handed_on(step: str, how: str) -> float:
    return REGISTRY.get_sample_value("orderflow_steps_handed_on_total", {"step": step, "how": how}) or 0.0


def handed_on_counts(how: str) -> dict[str, float]:
    return {step.name: handed_on(step.name, how) for step in saga.STEPS}


def transactions(db_url: str, order_id: object) -> list[list[str]]:
    """The order's events, grouped by the transaction that wrote them, in order."""
    with engine_for(db_url).connect() as connection:
        rows = connection.execute(
            text("SELECT transaction_id::text, type FROM order_events WHERE order_id = :id ORDER BY sequence"),
            {"id": order_id},
        ).all()
    groups: dict[str, list[str]] = {}
    for transaction_id, event_type in rows:
        groups.setdefault(transaction_id, []).append(event_type)
    return list(groups.values())


def test_the_first_step_s_message_runs_every_next_step_and_leaves_no_message_behind(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    inline, joined = handed_on_counts("inline"), handed_on_counts("joined")

    run_actions(saga.FIRST_STEP, str(order_id))  # what the reserve_stock actor does with its message

    # Every step in order, every one a first attempt that succeeded
    assert timeline(db_url, order_id) == [(step.name, "succeeded") for step in saga.STEPS]
    assert order_row(db_url, order_id)["status"] == "shipped"
    assert stock(db_url, product) == (5, 3, 0, 2)
    assert waiting(redis_client) == [], "no step needed a message of its own"
    # The stock commits before the charge, confirm and notify commit with it, the shipment alone
    assert transactions(db_url, order_id) == [
        ["order.reserved"],
        ["order.paid", "order.confirmed", "order.notified"],
        ["order.shipped"],
    ]
    assert {step: count - inline[step] for step, count in handed_on_counts("inline").items()} == {
        "reserve_stock": 0,  # the message's own step
        "charge_payment": 1,
        "confirm": 0,
        "notify": 0,
        "ship": 1,
    }
    assert {step: count - joined[step] for step, count in handed_on_counts("joined").items()} == {
        "reserve_stock": 0,
        "charge_payment": 0,
        "confirm": 1,
        "notify": 1,
        "ship": 0,
    }


def test_a_joined_step_that_fails_at_once_leaves_the_steps_before_it_committed_and_gets_its_own_message(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    failing_mail = LocalNotifier(LocalRecorder(db_url, "notifier", fault_rate=1.0))
    adapters = adapters_for(db_url, stripe_server.url, carrier_server.url, notifier=failing_mail)
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])

    run_actions(saga.FIRST_STEP, str(order_id), adapters)

    assert order_row(db_url, order_id)["status"] == "confirmed", "the charge and confirm committed without notify"
    assert timeline(db_url, order_id) == [
        ("reserve_stock", "succeeded"),
        ("charge_payment", "succeeded"),
        ("confirm", "succeeded"),
        ("notify", "retrying"),
    ]
    assert waiting(redis_client) == [("fulfilment", "notify", str(order_id))]
    [retry] = queued(redis_client, "fulfilment.DQ")
    assert retry.options["retries"] == 1, "the failed try in the charge's transaction counts against its budget"


@pytest.fixture
def timeline_refuses_notify(db_url: str) -> Iterator[None]:
    """Postgres fails the timeline row of a notify attempt, after notify has written its notification row."""
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text("""
            CREATE FUNCTION refuse_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.step = 'notify' THEN
                    RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'serialization_failure';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_notify BEFORE INSERT ON saga_steps FOR EACH ROW EXECUTE FUNCTION refuse_notify();
            """)
        )
    yield
    with engine_for(db_url).begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_notify ON saga_steps; DROP FUNCTION refuse_notify()"))


def test_a_joined_step_whose_statement_fails_is_undone_alone_and_the_steps_before_it_stay_committed(
    db_url: str,
    redis_client: redis.Redis,
    stripe_server: FakeStripeServer,
    carrier_server: FakeCarrierServer,
    timeline_refuses_notify: None,
) -> None:
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])

    run_actions(saga.FIRST_STEP, str(order_id))

    assert order_row(db_url, order_id)["status"] == "confirmed"
    assert timeline(db_url, order_id) == [
        ("reserve_stock", "succeeded"),
        ("charge_payment", "succeeded"),
        ("confirm", "succeeded"),
    ]  # notify's retry note is refused too
    assert count(db_url, "SELECT count(*) FROM notifications WHERE order_id = :id", id=order_id) == 0, (
        "the notification row written before the failing statement is rolled back with it"
    )
    assert count(db_url, "SELECT count(*) FROM payments WHERE order_id = :id AND status = 'succeeded'", id=order_id)
    assert waiting(redis_client) == [("fulfilment", "notify", str(order_id))]


def test_a_next_step_that_fails_at_once_is_sent_as_its_own_delayed_message_and_the_order_waits_for_it(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer
) -> None:
    stripe_server.set_faults(error_rate=1.0)  # every Stripe call answers 500: transient
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])
    sent_before = handed_on("charge_payment", "message")

    run_actions(saga.FIRST_STEP, str(order_id))  # returns: the reserve message is done, not failed

    assert order_row(db_url, order_id)["status"] == "reserved"
    assert timeline(db_url, order_id) == [("reserve_stock", "succeeded"), ("charge_payment", "retrying")]
    # Retried by its own message, after its own policy's first backoff (a delayed message)
    assert waiting(redis_client) == [("payments", "charge_payment", str(order_id))]
    [retry] = queued(redis_client, "payments.DQ")
    assert retry.options["eta"] > 0 and retry.options["retries"] == 1, "the failed try counts against its budget"
    assert handed_on("charge_payment", "message") == sent_before + 1

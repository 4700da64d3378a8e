"""A step's message goes on with the order's next steps in its thread; a step that fails at once gets its own."""

from __future__ import annotations

import redis
from prometheus_client import REGISTRY

from pipeline import saga
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import order_row
from tests.factories import make_order, make_product
from tests.saga_helpers import queued, stock, timeline
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


def test_the_first_step_s_message_runs_every_next_step_and_leaves_no_message_behind(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])
    before = {step.name: handed_on(step.name, "inline") for step in saga.STEPS}

    run_actions(saga.FIRST_STEP, str(order_id))  # what the reserve_stock actor does with its message

    # Each step in its own transaction, in order, every one a first attempt that succeeded
    assert timeline(db_url, order_id) == [(step.name, "succeeded") for step in saga.STEPS]
    assert order_row(db_url, order_id)["status"] == "shipped"
    assert stock(db_url, product) == (5, 3, 0, 2)
    assert waiting(redis_client) == [], "no step needed a message of its own"
    after = {step.name: handed_on(step.name, "inline") for step in saga.STEPS}
    assert {step: after[step] - before[step] for step in after} == {
        "reserve_stock": 0,  # the message's own step
        "charge_payment": 1,
        "confirm": 1,
        "notify": 1,
        "ship": 1,
    }


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

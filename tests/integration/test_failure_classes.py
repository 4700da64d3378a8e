"""Failures that are nobody's order's fault are not treated like an order's: bugs park at once, bad keys wait.

A constraint violation is a bug that fails the same way on every retry; a revoked provider key is our
misconfiguration. Neither may hold stock through minutes of retries, and a key problem cancels nobody.
"""

from __future__ import annotations

import redis

from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import adapters_for, order_row, rows, run_steps, run_undos
from tests.factories import make_order, make_product
from tests.saga_helpers import count, queued, stock
from workers.saga.runner import run_action


def test_a_constraint_violation_is_not_retried_and_the_order_is_compensated_at_once(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    # A zero total breaks the ledger's CHECK (amount_positive): no retry can fix that statement.
    product = make_product(db_url, stock=3, price_cents=0)
    order_id = make_order(db_url, [(product, 1)], price_cents=0)
    adapters = adapters_for(db_url, stripe_server.url, carrier_server.url)

    run_steps(order_id, adapters, "reserve_stock", "charge_payment")
    run_undos(order_id, adapters)

    assert order_row(db_url, order_id)["status"] == "cancelled"
    assert order_row(db_url, order_id)["cancel_reason"] == "DATABASE_ERROR"
    assert count(db_url, "SELECT count(*) FROM saga_steps WHERE outcome = 'retrying'") == 0
    assert stock(db_url, product) == (3, 3, 0, 0)
    assert stripe_server.ledger() == []


def test_a_refused_stripe_key_keeps_the_order_and_tries_again_later_outside_the_retry_budget(
    db_url: str, redis_client: redis.Redis, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    product = make_product(db_url, stock=3)
    order_id = make_order(db_url, [(product, 1)])
    good = adapters_for(db_url, stripe_server.url, carrier_server.url)
    run_steps(order_id, good, "reserve_stock")
    revoked = adapters_for(db_url, stripe_server.url, carrier_server.url, stripe_key="sk_live_revoked")

    for _ in range(12):  # more attempts than the step's retry budget (8)
        run_action("charge_payment", str(order_id), revoked)

    row = order_row(db_url, order_id)
    assert (row["status"], row["current_step"]) == ("reserved", "charge_payment")
    attempts = rows(db_url, "SELECT outcome, error_code FROM saga_steps WHERE step = 'charge_payment'")
    assert {(a["outcome"], a["error_code"]) for a in attempts} == {("retrying", "PAYMENT_PROVIDER_AUTH")}
    delayed = queued(redis_client, "payments.DQ")
    assert [m.actor_name for m in delayed] == ["charge_payment"] * 12
    assert all(m.options["eta"] > 0 for m in delayed)

    run_steps(order_id, good, "charge_payment")  # the key is fixed: the next try charges
    assert order_row(db_url, order_id)["status"] == "paid"

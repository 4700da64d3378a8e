"""orderctl's operator commands against the real Postgres, Redis, loopback Stripe and a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from sqlalchemy import text
from tenacity import Retrying, stop_after_delay, wait_fixed
from typer.testing import CliRunner, Result

from models.db import engine_for, unit_of_work
from models.orders import Order, OrderLine
from scripts.devstack.localstack import free_port
from scripts.fake_stripe import FakeStripeServer
from scripts.orderctl import CliError, app
from tests.factories import GOOD_ADDRESS, execute, make_order, make_product, stalled
from tests.saga_helpers import queued, stock, succeeded_charges, timeline, wait_until_terminal
from workers.enqueue import send, start_saga
from workers.operator.dead_letters import dead_letters
from workers.saga.runner import run_action


def orderctl(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit | CliError):
        raise result.exception
    return result


def orderctl_json(*args: str, exit_code: int = 0) -> Any:
    result = orderctl(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def orderctl_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point, whose main() turns failures into one line and exit 1."""
    command = [sys.executable, "-c", "from scripts.orderctl import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ | env, timeout=60)


def order_row(db_url: str, order_id: uuid.UUID) -> dict[str, Any]:
    with engine_for(db_url).connect() as connection:
        sql = "SELECT status, current_step, deliveries, lease_expires_at > now() AS leased FROM orders WHERE id = :id"
        return dict(connection.execute(text(sql), {"id": order_id}).one()._mapping)


def shipped(db_url: str) -> uuid.UUID:
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    start_saga(order_id)
    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    return order_id


def all_queued(client: redis.Redis) -> list[tuple[str, str]]:
    """(actor, order id) of every message waiting on any saga queue."""
    queues = ("stock", "payments", "orders", "fulfilment")
    return [(message.actor_name, message.args[0]) for queue in queues for message in queued(client, queue)]


def test_show_prints_an_order_with_its_lines_payment_and_timeline(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    order_id = shipped(db_url)

    story = orderctl_json("show", str(order_id))
    table = orderctl("show", str(order_id))

    assert (story["order"]["id"], story["order"]["status"]) == (str(order_id), "shipped")
    assert [line["quantity"] for line in story["lines"]] == [1]
    assert (story["payment"]["status"], story["payment"]["amount_cents"]) == ("succeeded", 1250)
    assert [step["step"] for step in story["timeline"]] == [
        "reserve_stock",
        "charge_payment",
        "confirm",
        "notify",
        "ship",
    ]
    assert table.exit_code == 0
    assert all(word in table.stdout for word in ("lines", "payment", "timeline", "shipped"))


def test_a_failure_reaches_the_operator_as_one_line_on_stderr_and_exit_1(db_url: str) -> None:
    result = orderctl_process("show", "order-17")

    assert (result.returncode, result.stdout, result.stderr) == (1, "", "error: not an order id: 'order-17'\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", str(uuid.UUID(int=7))], f"no order {uuid.UUID(int=7)}"),
        (["retry", str(uuid.UUID(int=1)), "nope", "--dry-run"], "not an order id: 'nope'"),
        (["compensate", str(uuid.UUID(int=7))], f"no order {uuid.UUID(int=7)}"),
        (["dlq", "purge", "--order", "42"], "not an order id: '42'"),
    ],
)
def test_an_unknown_or_malformed_id_fails_the_command_before_anything_changes(
    db_url: str, redis_client: redis.Redis, args: list[str], message: str
) -> None:
    result = orderctl(*args)

    assert (result.exit_code, str(result.exception), result.stdout) == (1, message, "")
    assert isinstance(result.exception, CliError)


@pytest.mark.parametrize(
    ("variable", "url", "shown"),
    [
        ("DATABASE_URL", "postgresql://ops:hunter2@127.0.0.1:{port}/orders", "cannot reach Postgres at"),
        ("REDIS_URL", "redis://:hunter2@127.0.0.1:{port}/0", "cannot reach Redis at"),
    ],
)
def test_an_unreachable_server_is_one_line_with_the_password_masked_and_exit_1(
    db_url: str, variable: str, url: str, shown: str
) -> None:
    result = orderctl_process("stuck", **{variable: url.format(port=free_port())})  # nobody listens there

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: " + shown)
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        ("--database-url", "postgresql://ops:hunter2@127.0.0.1:{port}/x", "cannot audit postgresql+psycopg://ops:***@"),
        ("--stripe-url", "http://127.0.0.1:{port}", "cannot read the Stripe ledger at http://127.0.0.1:"),
    ],
)
def test_audit_against_an_unreachable_server_fails_in_one_line(
    db_url: str, option: str, url: str, message: str
) -> None:
    result = orderctl("audit", option, url.format(port=free_port()))

    assert (result.exit_code, result.stdout) == (1, "")
    assert isinstance(result.exception, CliError)
    assert str(result.exception).startswith(message) and "\n" not in str(result.exception)


def test_stuck_lists_orders_whose_lease_ran_out_or_that_idle_and_marks_those_needing_attention(db_url: str) -> None:
    expired = stalled(db_url, "reserved", "charge_payment")
    fresh = make_order(db_url, [(make_product(db_url), 1)])
    parked = stalled(db_url, "needs_attention", "refund_payment")
    idle = make_order(db_url, [(make_product(db_url), 1)])
    execute(db_url, "UPDATE orders SET created_at = now() - interval '10 minutes' WHERE id = :id", id=idle)

    found = orderctl_json("stuck")
    patient = orderctl_json("stuck", "--older-than", "1h")
    table = orderctl("stuck")

    assert [row["id"] for row in found["stuck"]] == [str(idle), str(expired)]
    assert str(fresh) not in json.dumps(found)
    row = found["stuck"][1]
    assert (row["status"], row["step"], row["deliveries"]) == ("reserved", "charge_payment", 3)
    assert row["lease_left_s"] < -50
    assert [(row["id"], row["step"]) for row in found["needs_attention"]] == [(str(parked), "refund_payment")]
    assert found["needs_attention"][0]["last_error"] == "refund_payment: TRANSIENT_ERROR: provider down"
    assert [row["id"] for row in patient["stuck"]] == [str(expired)]
    assert "NEEDS ATTENTION: 1" in table.stdout


def test_a_dry_run_retry_changes_nothing_and_a_real_one_sends_the_due_message_with_a_fresh_lease(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    before = order_row(db_url, order_id)

    dry = orderctl_json("retry", str(order_id), "--dry-run")
    assert dry["changes"][0]["detail"] == "would send charge_payment"
    assert (order_row(db_url, order_id), all_queued(redis_client), timeline(db_url, order_id)) == (before, [], [])

    real = orderctl_json("retry", str(order_id), "--reason", "provider back")

    assert real["changes"][0] | {"detail": ""} == {
        "order_id": str(order_id),
        "action": "retry",
        "ok": True,
        "detail": "",
        "message_id": None,
    }
    assert all_queued(redis_client) == [("charge_payment", str(order_id))]
    assert order_row(db_url, order_id) == {
        "status": "reserved",
        "current_step": "charge_payment",
        "deliveries": 0,
        "leased": True,
    }
    assert timeline(db_url, order_id) == [("operator_retry", "succeeded")]


def test_retrying_twice_while_workers_run_ships_the_order_once_with_one_charge(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=5)
    order_id = make_order(db_url, [(product, 2)])  # its first message was lost

    assert orderctl("retry", str(order_id)).exit_code == 0
    assert orderctl("retry", str(order_id)).exit_code == 0

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    assert len(succeeded_charges(stripe_server.ledger(), order_id)) == 1
    assert stock(db_url, product) == (5, 3, 0, 2)
    assert [step for step, _ in timeline(db_url, order_id)].count("operator_retry") == 2


def test_retry_refuses_to_charge_again_when_earlier_charge_attempts_left_no_payment_record(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    execute(
        db_url,
        "INSERT INTO saga_steps (order_id, step, kind, outcome, error_code) "
        "VALUES (:id, 'charge_payment', 'action', 'retrying', 'PAYMENT_IN_DOUBT')",
        id=order_id,
    )

    refused = orderctl_json("retry", str(order_id), exit_code=1)
    result = orderctl("retry", str(order_id))

    assert (refused["refused"], refused["changes"][0]["ok"]) == (1, False)
    assert "re-charging could double charge" in refused["changes"][0]["detail"]
    assert result.exit_code == 1 and "1 of 1 refused" in result.stderr
    assert all_queued(redis_client) == []
    assert [step for step, _ in timeline(db_url, order_id)] == ["charge_payment"]


def test_retrying_an_order_that_needs_attention_re_runs_its_failed_compensation_until_cancelled(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    order_id = stalled(db_url, "needs_attention", "refund_payment")

    change = orderctl_json("retry", str(order_id))["changes"][0]

    assert change["detail"] == "sent refund_payment (needs_attention -> compensating)"
    order = wait_until_terminal(db_url, [order_id])[order_id]
    assert (order.status, order.cancel_reason) == ("cancelled", "PAYMENT_DECLINED")
    assert timeline(db_url, order_id)[-2:] == [("refund_payment", "skipped"), ("release_stock", "skipped")]


def test_compensating_a_reserved_order_cancels_it_and_releases_its_stock_once_workers_run(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=4)
    order_id = make_order(db_url, [(product, 3)])
    worker.pause()  # hold the saga at `reserved`, its charge message waiting in Redis
    run_action("reserve_stock", str(order_id))
    assert stock(db_url, product) == (4, 1, 3, 0)

    dry = orderctl_json("compensate", str(order_id), "--dry-run")
    assert dry["changes"][0]["detail"] == "would run refund_payment, release_stock, then cancel"
    assert order_row(db_url, order_id)["status"] == "reserved"
    result = orderctl("cancel", str(order_id), "--reason", "customer called")
    worker.resume()

    assert result.exit_code == 0
    order = wait_until_terminal(db_url, [order_id])[order_id]
    assert (order.status, order.cancel_reason) == ("cancelled", "CANCELLED_BY_OPERATOR")
    assert stock(db_url, product) == (4, 4, 0, 0)
    assert succeeded_charges(stripe_server.ledger(), order_id) == []
    steps = timeline(db_url, order_id)
    assert ("operator_compensate", "succeeded") in steps and steps.count(("release_stock", "succeeded")) == 1


def test_compensate_refuses_a_shipped_order_with_a_clear_message_and_exit_1(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "shipped", None)

    refused = orderctl_json("compensate", str(order_id), exit_code=1)

    assert refused["changes"][0]["detail"] == "order has shipped and cannot be cancelled"
    assert order_row(db_url, order_id)["status"] == "shipped"
    assert all_queued(redis_client) == []


def wait_for_dead_letters(client: redis.Redis, n: int) -> None:
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            assert len(dead_letters(client)) == n


def order_with_id(db_url: str, order_id: uuid.UUID) -> None:
    """An order whose id an earlier, dead-lettered message already named (the message overtook its commit)."""
    with unit_of_work(db_url) as session:
        line = OrderLine(product_id=make_product(db_url), line_no=1, quantity=1, unit_price_cents=1250)
        session.add(
            Order(
                id=order_id,
                client_id="shop-1",
                user_id="u-1",
                currency="USD",
                total_cents=1250,
                payment_method_id="pm_card_visa",
                shipping_address=GOOD_ADDRESS,
                lines=[line],
            )
        )


def revived_and_ghost(db_url: str, redis_client: redis.Redis) -> tuple[uuid.UUID, uuid.UUID]:
    """Two dead letters: one whose order was committed after its message overtook it, one with no order at all."""
    revived, ghost = uuid.uuid4(), uuid.uuid4()
    send("reserve_stock", revived)
    send("reserve_stock", ghost)
    wait_for_dead_letters(redis_client, 2)
    order_with_id(db_url, revived)
    return revived, ghost


def test_dead_letters_are_listed_requeued_through_their_order_and_purged_with_dry_runs_first(
    db_url: str, worker: dramatiq.Worker, redis_client: redis.Redis, stripe_server: FakeStripeServer
) -> None:
    revived, ghost = revived_and_ghost(db_url, redis_client)

    listed = orderctl_json("dlq", "list")
    assert (listed["count"], listed["by_queue"]) == (2, {"stock": 2})
    assert {letter["order_id"] for letter in listed["letters"]} == {str(revived), str(ghost)}
    dry = orderctl_json("dlq", "requeue", "--dry-run")
    assert {c["order_id"]: c["detail"] for c in dry["changes"]} == {
        str(revived): "would send reserve_stock",
        str(ghost): "would drop it: no live order",
    }
    assert len(dead_letters(redis_client)) == 2

    assert orderctl_json("dlq", "requeue", "--order", str(revived))["changes"][0]["detail"] == "sent reserve_stock"
    assert wait_until_terminal(db_url, [revived])[revived].status == "shipped"
    assert ("operator_dlq_requeue", "succeeded") in timeline(db_url, revived)
    assert orderctl_json("dlq", "purge", "--dry-run")["count"] == 1
    assert [letter.order_id for letter in dead_letters(redis_client)] == [str(ghost)]
    assert orderctl_json("dlq", "purge")["count"] == 1
    assert dead_letters(redis_client) == []


def test_a_bulk_retry_of_every_stuck_order_shows_its_blast_radius_first_and_keeps_to_its_rate(
    db_url: str, redis_client: redis.Redis
) -> None:
    orders = [stalled(db_url) for _ in range(6)]

    dry = orderctl_json("retry", "--all-stuck", "--dry-run")
    assert (dry["count"], dry["dry_run"], all_queued(redis_client)) == (6, True, [])
    started = time.monotonic()
    real = orderctl_json("retry", "--all-stuck", "--rate", "10")

    assert time.monotonic() - started >= 0.5  # six sends at 10/s: the last one 0.5 s after the first
    assert (real["count"], real["refused"]) == (6, 0)
    assert sorted(order_id for _, order_id in all_queued(redis_client)) == sorted(map(str, orders))


def test_stats_reports_orders_per_state_queue_depths_and_throughput_as_json(
    db_url: str, redis_client: redis.Redis
) -> None:
    waiting = make_order(db_url, [(make_product(db_url), 1)])
    done = stalled(db_url, "shipped", None)
    execute(  # the event its ship step writes with the move: throughput counts these
        db_url,
        "INSERT INTO order_events (id, order_id, client_id, sequence, type, payload)"
        " VALUES (gen_random_uuid(), :id, 'shop-1', 2, 'order.shipped', '{}')",
        id=done,
    )
    send("reserve_stock", waiting)

    data = orderctl_json("stats", "--minutes", "5")

    assert data["orders"] == {
        "pending": 1,
        "reserved": 0,
        "paid": 0,
        "confirmed": 0,
        "notified": 0,
        "compensating": 0,
        "needs_attention": 0,
    }  # shipped and cancelled only accumulate: their rate is below
    assert data["queues"]["stock"] | {"oldest_age_s": None} == {
        "queue": "stock",
        "ready": 1,
        "delayed": 0,
        "in_flight": 0,
        "dead": 0,
        "oldest_age_s": None,
    }
    assert len(data["throughput"]["per_minute"]) == 5
    assert sum(minute["shipped"] for minute in data["throughput"]["per_minute"]) == 1
    assert data["throughput"]["terminal_per_minute"] == 0.2


def test_audit_passes_on_a_clean_ledger_and_fails_with_exit_1_on_a_planted_violation(
    db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    shipped(db_url)

    clean = orderctl_json("audit", "--database-url", db_url, "--stripe-url", stripe_server.url)
    execute(db_url, "UPDATE products SET available = available - 1, reserved = reserved + 1")
    broken = orderctl_json("audit", "--stripe-url", stripe_server.url, exit_code=1)

    assert (clean["ok"], clean["provider"]) == (True, True)
    assert "shipped order not charged at the provider" in {check["check"] for check in clean["checks"]}
    assert broken["ok"] is False
    failed = {check["check"]: check["count"] for check in broken["checks"] if check["count"]}
    assert failed == {"reserved stock disagrees with held reservations": 1}


def test_stuck_limits_each_list_on_its_own_so_old_parked_orders_never_hide_a_stalled_live_one(db_url: str) -> None:
    parked = [stalled(db_url, "needs_attention", "refund_payment") for _ in range(3)]
    live = stalled(db_url, "reserved", "charge_payment")  # newer than every parked one

    found = orderctl_json("stuck", "--limit", "2")

    assert [row["id"] for row in found["stuck"]] == [str(live)]
    assert [row["id"] for row in found["needs_attention"]] == [str(order) for order in parked[:2]]

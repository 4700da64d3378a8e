"""The reaper against the real database and Redis: stalled live orders are re-driven once, nothing else is;
poison is given up on, and stock held past its TTL is released through compensation."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import text

from models.db import engine_for
from models.status import OrderStatus
from pipeline import saga
from tests.factories import make_order, make_product
from tests.saga_helpers import count, queued, stock, wait_until_terminal
from workers.enqueue import send
from workers.reaper import Policy, sweep
from workers.saga.runner import run_action

LEASE_S = 30.0
POLICY = Policy(lease_s=LEASE_S, max_redeliveries=5, reservation_ttl_s=900)
QUEUES = sorted({saga.queue_of(step.name) for step in saga.STEPS} | {saga.queue_of(undo) for undo in saga.UNDO_ORDER})


def new_order(db_url: str) -> uuid.UUID:
    return make_order(db_url, [(make_product(db_url), 1)])


def set_row(
    db_url: str,
    order_id: uuid.UUID,
    *,
    status: OrderStatus,
    current_step: str | None,
    lease_in_s: float,
    deliveries: int = 0,
) -> None:
    """Put the order in `status` with its lease `lease_in_s` seconds from now (negative: expired)."""
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text(
                "UPDATE orders SET status = :status, current_step = :step, deliveries = :deliveries,"
                " cancel_reason = :reason,"
                " lease_expires_at = now() + make_interval(secs => :lease_in_s) WHERE id = :id"
            ),
            {
                "id": order_id,
                "status": status.value,
                "step": current_step,
                "reason": "CANCELLED_BY_REQUEST" if status == OrderStatus.CANCELLED else None,
                "deliveries": deliveries,
                "lease_in_s": lease_in_s,
            },
        )


def stalled_order(db_url: str, status: OrderStatus = OrderStatus.PENDING, deliveries: int = 0) -> uuid.UUID:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=status, current_step=saga.step_due(status), lease_in_s=-60, deliveries=deliveries)
    return order_id


def lease_row(db_url: str, order_id: uuid.UUID) -> tuple[int, float]:
    """(deliveries, seconds from now until the lease expires)."""
    with engine_for(db_url).connect() as connection:
        row = connection.execute(
            text("SELECT deliveries, extract(epoch FROM lease_expires_at - now()) FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()
    return int(row[0]), float(row[1])


def all_queued(client: redis.Redis) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(queue, actor, args) of every message waiting on any saga queue."""
    return [(queue, message.actor_name, tuple(message.args)) for queue in QUEUES for message in queued(client, queue)]


def test_an_order_whose_lease_ran_out_is_re_driven_with_a_new_lease_and_its_due_message(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled_order(db_url, deliveries=2)

    sent = sweep(db_url, POLICY).redriven

    assert sent == [(order_id, "reserve_stock")]
    deliveries, lease_left = lease_row(db_url, order_id)
    assert deliveries == 3
    assert 8 * LEASE_S - 5 < lease_left <= 8 * LEASE_S, "a third re-drive waits 2**3 leases (the cap)"
    [message] = queued(redis_client, "stock")
    assert (message.actor_name, message.args, message.queue_name) == ("reserve_stock", (str(order_id),), "stock")
    assert all_queued(redis_client) == [("stock", "reserve_stock", (str(order_id),))]


@pytest.mark.parametrize(
    "status", [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.NOTIFIED]
)
def test_a_stalled_order_at_any_forward_status_is_re_driven_to_its_due_step_on_that_steps_queue(
    db_url: str, redis_client: redis.Redis, status: OrderStatus
) -> None:
    order_id = stalled_order(db_url, status)
    due = saga.step_due(status)
    assert due is not None

    sent = sweep(db_url, POLICY).redriven

    assert sent == [(order_id, due)]
    assert all_queued(redis_client) == [(saga.queue_of(due), due, (str(order_id),))]


def test_a_stalled_order_without_a_current_step_is_re_driven_to_the_step_its_status_waits_for(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=OrderStatus.PAID, current_step=None, lease_in_s=-60)

    sent = sweep(db_url, POLICY).redriven

    assert sent == [(order_id, "confirm")]
    assert all_queued(redis_client) == [("orders", "confirm", (str(order_id),))]


def test_an_order_whose_lease_has_not_run_out_is_left_alone(db_url: str, redis_client: redis.Redis) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=OrderStatus.RESERVED, current_step="charge_payment", lease_in_s=20, deliveries=1)

    sent = sweep(db_url, POLICY).redriven

    assert sent == []
    deliveries, lease_left = lease_row(db_url, order_id)
    assert deliveries == 1
    assert 10 < lease_left <= 20
    assert all_queued(redis_client) == []


@pytest.mark.parametrize(
    ("status", "current_step"),
    [
        (OrderStatus.SHIPPED, None),
        (OrderStatus.CANCELLED, None),
        (OrderStatus.NEEDS_ATTENTION, "refund_payment"),
    ],
)
def test_a_terminal_order_is_never_re_driven_even_with_an_expired_lease(
    db_url: str, redis_client: redis.Redis, status: OrderStatus, current_step: str | None
) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=status, current_step=current_step, lease_in_s=-600, deliveries=4)

    sent = sweep(db_url, POLICY).redriven

    assert sent == []
    deliveries, lease_left = lease_row(db_url, order_id)
    assert deliveries == 4
    assert lease_left < 0
    assert all_queued(redis_client) == []


@pytest.mark.parametrize("undo", saga.UNDO_ORDER)
def test_a_stalled_compensating_order_is_re_driven_to_its_current_compensation(
    db_url: str, redis_client: redis.Redis, undo: str
) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=OrderStatus.COMPENSATING, current_step=undo, lease_in_s=-60)

    sent = sweep(db_url, POLICY).redriven

    assert sent == [(order_id, undo)]
    assert lease_row(db_url, order_id)[0] == 1
    assert all_queued(redis_client) == [(saga.queue_of(undo), undo, (str(order_id),))]


@pytest.mark.parametrize("lock", ["FOR UPDATE", "FOR NO KEY UPDATE"])
def test_an_order_whose_row_is_locked_by_a_running_step_is_skipped(
    db_url: str, redis_client: redis.Redis, lock: str
) -> None:
    busy, idle = stalled_order(db_url), stalled_order(db_url, OrderStatus.PAID)
    result: list[list[tuple[uuid.UUID, str]]] = []

    with engine_for(db_url).connect() as holder, holder.begin():
        holder.execute(text(f"SELECT id FROM orders WHERE id = :id {lock}"), {"id": busy})
        sweeper = threading.Thread(target=lambda: result.append(sweep(db_url, POLICY).redriven), daemon=True)
        sweeper.start()
        sweeper.join(timeout=20)
        blocked = sweeper.is_alive()

    assert not blocked, "the sweep waited for the locked row instead of skipping it"
    assert result == [[(idle, "confirm")]]
    assert lease_row(db_url, busy)[0] == 0
    assert all_queued(redis_client) == [("orders", "confirm", (str(idle),))]
    assert sweep(db_url, POLICY).redriven == [(busy, "reserve_stock")], "once the lock is gone the order is re-driven"


def test_two_sweeps_at_once_re_drive_each_stalled_order_exactly_once_in_total(
    db_url: str, redis_client: redis.Redis
) -> None:
    statuses = [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID, OrderStatus.CONFIRMED]
    orders = {stalled_order(db_url, statuses[n % len(statuses)]) for n in range(40)}
    start = threading.Barrier(2)
    results: list[list[tuple[uuid.UUID, str]]] = []
    failures: list[BaseException] = []

    def race() -> None:
        start.wait()
        try:
            results.append(sweep(db_url, POLICY).redriven)
        except BaseException as error:  # surfaced in the assertions below
            failures.append(error)

    threads = [threading.Thread(target=race, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(results) == 2
    redriven = [order_id for result in results for order_id, _ in result]
    assert sorted(redriven) == sorted(orders)
    assert all(lease_row(db_url, order_id)[0] == 1 for order_id in orders)
    messages = all_queued(redis_client)
    assert len(messages) == len(orders)
    assert sorted(args[0] for _, _, args in messages) == sorted(str(order_id) for order_id in orders)
    assert sweep(db_url, POLICY).redriven == [], "every order got a fresh lease"


def test_two_reapers_sweeping_in_small_batches_share_the_stalled_orders_without_overlap(
    db_url: str, redis_client: redis.Redis
) -> None:
    orders = {stalled_order(db_url, OrderStatus.RESERVED) for _ in range(60)}
    start = threading.Barrier(2)
    results: dict[str, list[tuple[uuid.UUID, str]]] = {"a": [], "b": []}
    failures: list[BaseException] = []

    def reaper(name: str) -> None:
        start.wait()
        try:
            while batch := sweep(db_url, POLICY, limit=3).redriven:
                results[name].extend(batch)
        except BaseException as error:  # surfaced in the assertions below
            failures.append(error)

    threads = [threading.Thread(target=reaper, args=(name,), daemon=True) for name in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    redriven = [order_id for batch in results.values() for order_id, _ in batch]
    assert sorted(redriven) == sorted(orders)
    assert {step for batch in results.values() for _, step in batch} == {"charge_payment"}
    assert len(queued(redis_client, "payments")) == len(orders)


def test_each_re_drive_without_progress_doubles_the_next_lease_and_keeps_the_last_progress_time(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled_order(db_url)
    progressed = last_progress(db_url, order_id)

    assert sweep(db_url, POLICY).redriven == [(order_id, "reserve_stock")]

    deliveries, lease_left = lease_row(db_url, order_id)
    assert deliveries == 1
    assert 2 * LEASE_S - 5 < lease_left <= 2 * LEASE_S
    assert last_progress(db_url, order_id) == progressed, "the reaper's bookkeeping is not progress"


def test_an_order_whose_message_waits_behind_older_messages_in_its_queue_is_not_re_driven(
    db_url: str, redis_client: redis.Redis
) -> None:
    send("reserve_stock", uuid.uuid4())  # a message that has waited in the stock queue since before...
    time.sleep(1.1)
    waiting = stalled_order(db_url)  # ...this order last made progress: its own message is behind it

    result = sweep(db_url, POLICY)

    assert result.redriven == [] and result.waiting == 1
    assert lease_row(db_url, waiting)[0] == 0, "waiting in a queue is not a delivery"
    assert LEASE_S - 5 < lease_row(db_url, waiting)[1] <= LEASE_S
    assert len(queued(redis_client, "stock")) == 1


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.PAID])
def test_a_step_re_driven_too_often_is_taken_for_poison_and_the_order_is_compensated(
    db_url: str, redis_client: redis.Redis, status: OrderStatus
) -> None:
    order_id = stalled_order(db_url, status, deliveries=POLICY.max_redeliveries)
    due = saga.step_due(status)
    assert due is not None

    result = sweep(db_url, POLICY)

    assert result.redriven == [] and result.poisoned == [(order_id, due)]
    row = order_row(db_url, order_id)
    assert (row["status"], row["cancel_reason"], row["current_step"]) == (
        "compensating",
        "REDELIVERY_LIMIT",
        saga.compensation_plan(due)[0],
    )
    assert all_queued(redis_client) == [(saga.queue_of(row["current_step"]), row["current_step"], (str(order_id),))]
    failed = step_rows(db_url, order_id)
    assert (due, "action", "failed", "REDELIVERY_LIMIT") in failed


def test_a_compensation_re_driven_too_often_parks_the_order_for_a_person(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = new_order(db_url)
    set_row(
        db_url,
        order_id,
        status=OrderStatus.COMPENSATING,
        current_step="refund_payment",
        lease_in_s=-60,
        deliveries=POLICY.max_redeliveries,
    )

    assert sweep(db_url, POLICY).poisoned == [(order_id, "refund_payment")]

    assert order_row(db_url, order_id)["status"] == "needs_attention"
    assert ("refund_payment", "compensation", "failed", "REDELIVERY_LIMIT") in step_rows(db_url, order_id)
    assert all_queued(redis_client) == []


def test_stock_held_past_its_ttl_is_released_through_compensation_and_a_fresh_hold_is_left_alone(
    db_url: str, redis_client: redis.Redis, stripe_server: object, request: pytest.FixtureRequest
) -> None:
    product = make_product(db_url, stock=10)
    expired, fresh = make_order(db_url, [(product, 2)]), make_order(db_url, [(product, 3)])
    for order_id in (expired, fresh):
        run_action("reserve_stock", str(order_id))  # no worker yet: their charge messages wait in Redis
    backdate_reservations(db_url, expired, seconds=120)

    result = sweep(db_url, Policy(lease_s=LEASE_S, reservation_ttl_s=60))

    assert result.expired == [expired]
    assert order_row(db_url, expired)["cancel_reason"] == "RESERVATION_EXPIRED"
    request.getfixturevalue("worker")  # it starts from an empty broker: hand it the messages again
    for order_id, actor in ((fresh, "charge_payment"), (expired, "charge_payment"), (expired, "refund_payment")):
        send(actor, order_id)  # the expired order's late charge message must be skipped
    final = wait_until_terminal(db_url, [expired, fresh])
    assert (final[expired].status, final[fresh].status) == ("cancelled", "shipped")
    assert stock(db_url, product) == (10, 7, 0, 3), "the expired order's 2 units are back on the shelf"
    assert ("charge_payment", "action", "failed", "RESERVATION_EXPIRED") in step_rows(db_url, expired)
    assert count(db_url, "SELECT count(*) FROM payments WHERE order_id = :id", id=expired) == 0, "never charged"


def test_the_sweep_exports_stalled_orders_and_how_long_they_stood_still(db_url: str, redis_client: redis.Redis) -> None:
    orders = [stalled_order(db_url) for _ in range(3)]
    for order_id in orders:
        backdate_progress(db_url, order_id, seconds=25)
    observed_before = sample("orderflow_recovery_latency_seconds_count")
    slow_before = sample("orderflow_recovery_latency_seconds_bucket", le="20.0")

    sweep(db_url, POLICY)

    assert sample("orderflow_orders_stalled") == 3
    assert sample("orderflow_recovery_latency_seconds_count") - observed_before == 3
    assert sample("orderflow_recovery_latency_seconds_bucket", le="20.0") == slow_before, "each stood ~25 s"
    sweep(db_url, POLICY)
    assert sample("orderflow_orders_stalled") == 0


def last_progress(db_url: str, order_id: uuid.UUID) -> object:
    return order_row(db_url, order_id)["updated_at"]


def backdate_progress(db_url: str, order_id: uuid.UUID, seconds: float) -> None:
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text("UPDATE orders SET updated_at = now() - make_interval(secs => :s) WHERE id = :id"),
            {"id": order_id, "s": seconds},
        )


def backdate_reservations(db_url: str, order_id: uuid.UUID, seconds: float) -> None:
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text("UPDATE reservations SET created_at = now() - make_interval(secs => :s) WHERE order_id = :id"),
            {"id": order_id, "s": seconds},
        )


def order_row(db_url: str, order_id: uuid.UUID) -> dict[str, Any]:
    with engine_for(db_url).connect() as connection:
        return dict(connection.execute(text("SELECT * FROM orders WHERE id = :id"), {"id": order_id}).mappings().one())


def step_rows(db_url: str, order_id: uuid.UUID) -> list[tuple[str, str, str, str | None]]:
    with engine_for(db_url).connect() as connection:
        rows = connection.execute(
            text("SELECT step, kind, outcome, error_code FROM saga_steps WHERE order_id = :id ORDER BY started_at"),
            {"id": order_id},
        )
        return [tuple(row) for row in rows]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0

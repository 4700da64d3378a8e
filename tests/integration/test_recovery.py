"""The reaper against the real database and Redis: stalled live orders are re-driven once, nothing else is."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis
from sqlalchemy import text

from models.db import engine_for
from models.status import OrderStatus
from pipeline import saga
from tests.factories import make_order, make_product
from tests.saga_helpers import queued
from workers.recovery import sweep

LEASE_S = 30.0
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

    sent = sweep(db_url, LEASE_S)

    assert sent == [(order_id, "reserve_stock")]
    deliveries, lease_left = lease_row(db_url, order_id)
    assert deliveries == 3
    assert LEASE_S - 5 < lease_left <= LEASE_S
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

    sent = sweep(db_url, LEASE_S)

    assert sent == [(order_id, due)]
    assert all_queued(redis_client) == [(saga.queue_of(due), due, (str(order_id),))]


def test_a_stalled_order_without_a_current_step_is_re_driven_to_the_step_its_status_waits_for(
    db_url: str, redis_client: redis.Redis
) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=OrderStatus.PAID, current_step=None, lease_in_s=-60)

    sent = sweep(db_url, LEASE_S)

    assert sent == [(order_id, "confirm")]
    assert all_queued(redis_client) == [("orders", "confirm", (str(order_id),))]


def test_an_order_whose_lease_has_not_run_out_is_left_alone(db_url: str, redis_client: redis.Redis) -> None:
    order_id = new_order(db_url)
    set_row(db_url, order_id, status=OrderStatus.RESERVED, current_step="charge_payment", lease_in_s=20, deliveries=1)

    sent = sweep(db_url, LEASE_S)

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

    sent = sweep(db_url, LEASE_S)

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

    sent = sweep(db_url, LEASE_S)

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
        sweeper = threading.Thread(target=lambda: result.append(sweep(db_url, LEASE_S)), daemon=True)
        sweeper.start()
        sweeper.join(timeout=20)
        blocked = sweeper.is_alive()

    assert not blocked, "the sweep waited for the locked row instead of skipping it"
    assert result == [[(idle, "confirm")]]
    assert lease_row(db_url, busy)[0] == 0
    assert all_queued(redis_client) == [("orders", "confirm", (str(idle),))]
    assert sweep(db_url, LEASE_S) == [(busy, "reserve_stock")], "once the lock is gone the order is re-driven"


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
            results.append(sweep(db_url, LEASE_S))
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
    assert sweep(db_url, LEASE_S) == [], "every order got a fresh lease"


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
            while batch := sweep(db_url, LEASE_S, limit=3):
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

"""Messages Dramatiq gives up on are visible with their order ids and can be re-driven safely."""

from __future__ import annotations

import dataclasses
import uuid

import dramatiq
import redis
from tenacity import Retrying, stop_after_delay, wait_fixed

from scripts.fake_stripe import FakeStripeServer
from tests.factories import make_order, make_product
from tests.saga_helpers import wait_until_terminal
from workers.enqueue import send
from workers.operator.actions import requeue
from workers.operator.dead_letters import DeadLetter, dead_letters


def wait_for_dead_letters(client: redis.Redis, n: int) -> list[DeadLetter]:
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.1), reraise=True):
        with attempt:
            letters = dead_letters(client)
            assert len(letters) == n
    return letters


def test_a_message_for_an_unknown_order_is_dead_lettered_with_its_order_id(
    db_url: str, worker: dramatiq.Worker, redis_client: redis.Redis
) -> None:
    ghost = uuid.uuid4()

    send("reserve_stock", ghost)

    [letter] = wait_for_dead_letters(redis_client, 1)
    assert (letter.queue, letter.actor, letter.order_id) == ("stock", "reserve_stock", str(ghost))


def test_redriving_a_dead_letter_resumes_the_order_from_its_recorded_state(
    db_url: str, worker: dramatiq.Worker, redis_client: redis.Redis, stripe_server: FakeStripeServer
) -> None:
    ghost = uuid.uuid4()
    send("reserve_stock", ghost)
    [letter] = wait_for_dead_letters(redis_client, 1)
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    # The same letter, pointing at a real order whose first message was lost.
    letter = dataclasses.replace(letter, order_id=str(order_id))

    change = requeue(db_url, redis_client, letter, dry_run=False, note="test")

    assert (change.ok, change.detail) == (True, "sent reserve_stock")

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    assert dead_letters(redis_client) == []

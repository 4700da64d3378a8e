"""A server that accepts connections and never answers costs a bounded wait, and Dramatiq sees a lost connection.

The hung server is a listening socket nobody accepts from: the kernel completes the handshake and buffers what
is sent, as it does for a SIGSTOPped Redis.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.errors import ConnectionClosed

from api.database import waited
from workers.broker import HandingBackConsumer, build_broker

TIMEOUT_S = 0.2


@pytest.fixture
def hung_redis_url() -> Iterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def message(redis_message_id: str = "m-1") -> dramatiq.Message[object]:
    return dramatiq.Message(
        queue_name="stock",
        actor_name="reserve_stock",
        args=("order-1",),
        kwargs={},
        options={"redis_message_id": redis_message_id},
    )


def test_the_broker_is_built_with_the_socket_timeout_for_connecting_and_reading() -> None:
    broker = build_broker("redis://127.0.0.1:1/0", 0.75)

    kwargs = broker.client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.75, 0.75)


def test_an_enqueue_on_a_hung_redis_fails_after_the_socket_timeout(hung_redis_url: str) -> None:
    broker = build_broker(hung_redis_url, TIMEOUT_S)
    started = time.monotonic()

    with pytest.raises(redis.TimeoutError):
        broker.enqueue(message())

    assert time.monotonic() - started < 4 * TIMEOUT_S, "no retries stacked on the timeout"


def test_a_consumer_takes_a_hung_redis_for_a_lost_connection_when_fetching_acking_and_closing(
    hung_redis_url: str,
) -> None:
    # Dramatiq restarts a consumer and retries an ack on ConnectionClosed; any other error it takes for a bug.
    consumer = build_broker(hung_redis_url, TIMEOUT_S).consume("stock")
    assert isinstance(consumer, HandingBackConsumer)

    with pytest.raises(ConnectionClosed):
        next(consumer)
    with pytest.raises(ConnectionClosed):
        consumer.ack(dramatiq.MessageProxy(message()))
    with pytest.raises(ConnectionClosed):
        consumer.nack(dramatiq.MessageProxy(message()))
    consumer.message_cache = [message("prefetched").encode()]
    with pytest.raises(ConnectionClosed):
        consumer.close()


def test_work_that_outlasts_its_budget_comes_back_running_and_is_left_to_finish() -> None:
    async def scenario() -> tuple[bool, bool, str]:
        finished = asyncio.Event()

        async def slow() -> str:
            await asyncio.sleep(0.3)
            finished.set()
            return "committed"

        task = await waited(slow(), 0.05)
        running = not task.done()
        await asyncio.wait_for(finished.wait(), 2)  # nobody awaits the task: it still runs to its end
        await asyncio.sleep(0)
        return running, task.done(), task.result()

    assert asyncio.run(scenario()) == (True, True, "committed")


def test_work_that_ends_within_its_budget_comes_back_done() -> None:
    async def quick() -> int:
        return 42

    async def scenario() -> int:
        return (await waited(quick(), 1.0)).result()

    assert asyncio.run(scenario()) == 42

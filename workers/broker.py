"""The Redis broker: built from settings by each process's entry point, and installed before any actor is declared.

Nothing here runs at import. The entry points call `install`: the worker's Dramatiq target
(workers/saga/worker.py), the API's `create_app`, the reaper's `main` and `orderctl`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware

from pipeline.config import Settings
from workers.saga.log_context import LogContext


class HandingBackConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, which on close also hands back the messages it prefetched, and which takes a
    Redis that does not answer within the socket timeout for a lost connection.

    Dramatiq requeues the messages in a stopping worker's memory, but not the prefetch cache of its
    Redis consumer: those stay in the worker's ack set until another worker's maintenance pass
    notices the missing heartbeat (60 s, at random). A SIGTERMed worker must hand them back now.

    Dramatiq handles only `redis.ConnectionError` as the broker's connection failing: it restarts the
    consumer, and retries an ack until it gets through. A `redis.TimeoutError` (a hung Redis) it takes for
    a bug: it drops the ack with a traceback, and one raised while the consumer closes (handing back delayed
    or prefetched messages) ends the consumer thread, so the worker stops consuming that queue.
    """

    def __next__(self) -> dramatiq.MessageProxy | None:
        with hung_is_lost():
            return super().__next__()  # type: ignore[no-untyped-call, no-any-return]

    def ack(self, message: dramatiq.MessageProxy) -> None:
        with hung_is_lost():
            super().ack(message)  # type: ignore[no-untyped-call]

    def nack(self, message: dramatiq.MessageProxy) -> None:
        with hung_is_lost():
            super().nack(message)  # type: ignore[no-untyped-call]

    def requeue(self, messages: Iterable[dramatiq.MessageProxy]) -> None:
        with hung_is_lost():
            super().requeue(messages)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        message_ids = [dramatiq.Message.decode(data).options["redis_message_id"] for data in self.message_cache if data]
        self.message_cache = []
        if message_ids:
            with hung_is_lost():
                self.broker.do_requeue(self.queue_name, *message_ids)


@contextmanager
def hung_is_lost() -> Iterator[None]:
    """Raise a Redis socket timeout as Dramatiq's ConnectionClosed, which its worker knows how to recover from."""
    try:
        yield
    except redis.TimeoutError as error:
        raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]


class HandingBackRedisBroker(RedisBroker):
    url: str = ""  # the Redis it was built for, so installing twice keeps one broker

    @property
    def consumer_class(self) -> type[HandingBackConsumer]:
        return HandingBackConsumer


def install(settings: Settings) -> RedisBroker:
    """The process's broker for these settings, made the global one that actors and `workers.enqueue` use.

    Installing again with the same Redis keeps the broker (and the actors declared on it).
    """
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not set: start the stack through `orderctl demo`, or set REDIS_URL")
    current = dramatiq.broker.global_broker
    if isinstance(current, HandingBackRedisBroker) and current.url == settings.redis_url:
        return current
    broker = build_broker(settings.redis_url, settings.broker_socket_timeout_s, os.environ.get("dramatiq_prom_db"))
    dramatiq.set_broker(broker)
    return broker


def installed() -> RedisBroker:
    """The broker an entry point installed; an error, not Dramatiq's default broker on localhost, if none did."""
    broker = dramatiq.broker.global_broker
    if not isinstance(broker, RedisBroker):
        raise RuntimeError("no broker installed: the entry point must call workers.broker.install(settings) first")
    return broker


def build_broker(redis_url: str, socket_timeout_s: float, metrics_dir: str | None = None) -> RedisBroker:
    """A Redis broker with Dramatiq's defaults (retries, time limits, shutdown) plus our middleware.

    Its client gives up on a Redis call after socket_timeout_s (connecting too), so a hung Redis fails an
    enqueue instead of blocking it. The client is ours: Dramatiq drops connection parameters given with a URL.
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s)
    broker = HandingBackRedisBroker(client=client, namespace="orderflow")  # type: ignore[no-untyped-call]
    broker.url = redis_url
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    if metrics_dir:  # the autoscaler sets the folder for its workers
        broker.add_middleware(worker_metrics(metrics_dir))
    return broker


def worker_metrics(metrics_dir: str) -> Middleware:
    """Dramatiq's Prometheus middleware without its exposition server, writing to the shared metrics folder.

    Every worker process would fork one on the same port; the autoscaler serves the shared folder once for
    all of them (workers/autoscale/metrics.py). prometheus_client picks its storage at first import, so the
    saga's own metrics (pipeline.metrics, imported with the actors, after this) see the same folder.
    """
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    from dramatiq.middleware.prometheus import Prometheus  # reads dramatiq_prom_db at import

    class WorkerMetrics(Prometheus):
        @property
        def forks(self) -> list[Callable[[], int]]:
            return []

    return WorkerMetrics()

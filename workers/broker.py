"""The Redis broker, built from settings and installed before any actor is declared."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware

from pipeline.config import get_settings
from pipeline.logs import configure_logging
from workers.middleware import LogContext

# Worker metrics are on when the worker's metrics folder is set (the autoscaler sets it for its workers).
# prometheus_client picks its storage at first import, so the saga's own metrics must see the same
# folder before pipeline.metrics is imported: that is why this runs here, before any actor module.
METRICS_DIR = os.environ.get("dramatiq_prom_db")
if METRICS_DIR:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", METRICS_DIR)


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
    @property
    def consumer_class(self) -> type[HandingBackConsumer]:
        return HandingBackConsumer


def build_broker(redis_url: str, socket_timeout_s: float) -> RedisBroker:
    """A Redis broker with Dramatiq's defaults (retries, time limits, shutdown) plus our middleware.

    Its client gives up on a Redis call after socket_timeout_s (connecting too), so a hung Redis fails an
    enqueue instead of blocking it. The client is ours: Dramatiq drops connection parameters given with a URL.
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s)
    broker = HandingBackRedisBroker(client=client, namespace="orderflow")  # type: ignore[no-untyped-call]
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    if METRICS_DIR:
        broker.add_middleware(worker_metrics())
    return broker


def worker_metrics() -> Middleware:
    """Dramatiq's Prometheus middleware without its exposition server.

    Every `dramatiq workers` invocation would fork one on the same port; the autoscaler serves the
    shared folder once for all of them (workers/autoscale_metrics.py).
    """
    from dramatiq.middleware.prometheus import Prometheus  # reads dramatiq_prom_db at import

    class WorkerMetrics(Prometheus):
        @property
        def forks(self) -> list[Callable[[], int]]:
            return []

    return WorkerMetrics()


def redis_url() -> str:
    url = get_settings().redis_url
    if url is None:
        raise RuntimeError("REDIS_URL is not set: start workers through `orderctl demo`, or set REDIS_URL")
    return url


configure_logging(get_settings().log_level, get_settings().log_format)
broker = build_broker(redis_url(), get_settings().broker_socket_timeout_s)
dramatiq.set_broker(broker)

"""The Redis broker, built from settings and installed before any actor is declared."""

from __future__ import annotations

import os
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
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
    """Dramatiq's Redis consumer, which on close also hands back the messages it prefetched.

    Dramatiq requeues the messages in a stopping worker's memory, but not the prefetch cache of its
    Redis consumer: those stay in the worker's ack set until another worker's maintenance pass
    notices the missing heartbeat (60 s, at random). A SIGTERMed worker must hand them back now.
    """

    def close(self) -> None:
        message_ids = [dramatiq.Message.decode(data).options["redis_message_id"] for data in self.message_cache if data]
        self.message_cache = []
        if message_ids:
            self.broker.do_requeue(self.queue_name, *message_ids)


class HandingBackRedisBroker(RedisBroker):
    @property
    def consumer_class(self) -> type[HandingBackConsumer]:
        return HandingBackConsumer


def build_broker(redis_url: str) -> RedisBroker:
    """A Redis broker with Dramatiq's defaults (retries, time limits, shutdown) plus our middleware."""
    broker = HandingBackRedisBroker(url=redis_url, namespace="orderflow")  # type: ignore[no-untyped-call]
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
broker = build_broker(redis_url())
dramatiq.set_broker(broker)

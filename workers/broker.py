"""The Redis broker, built from settings and installed before any actor is declared."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from pipeline.config import get_settings
from pipeline.logs import configure_logging
from workers.middleware import LogContext


def build_broker(redis_url: str) -> RedisBroker:
    """A Redis broker with Dramatiq's defaults (retries, time limits, shutdown) plus our context middleware."""
    broker = RedisBroker(url=redis_url, namespace="orderflow")
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(LogContext())
    return broker


def redis_url() -> str:
    url = get_settings().redis_url
    if url is None:
        raise RuntimeError("REDIS_URL is not set: start workers through `orderctl demo`, or set REDIS_URL")
    return url


configure_logging(get_settings().log_level, get_settings().log_format)
broker = build_broker(redis_url())
dramatiq.set_broker(broker)

"""Real servers for the tests: Postgres and Redis started by the same code as the local stack.

A test run gets its own fresh database (migrated to head) on the embedded or configured Postgres,
and its own private Redis server, so runs can happen side by side. Tables are truncated between
tests, not re-migrated.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack

import dramatiq
import pytest
import redis
import structlog
from sqlalchemy import text

from models.db import engine_for
from models.tables import Base
from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from pipeline.logs import UVICORN_LOGGERS
from scripts import localstack
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer

# The URLs this test run talks to (database_url, redis_url).
Servers = localstack.Stack


_run = ExitStack()
_started: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Start the servers before test modules are imported: the Dramatiq broker binds at import."""
    stack = _run.enter_context(localstack.scratch_servers(os.environ.get("DATABASE_URL"), "orderflow_test"))
    _started["servers"] = stack
    os.environ.update(DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
    os.environ.setdefault("LOG_FORMAT", "console")
    # The loopback Stripe, reached through the real SDK; a short timeout keeps in-doubt tests quick.
    stripe = _run.enter_context(FakeStripeServer())
    _started["stripe"] = stripe
    os.environ.update(STRIPE_API_BASE=stripe.url, STRIPE_API_KEY=LOCAL_STRIPE_KEY, STRIPE_TIMEOUT_S="2")
    # The local carrier over real HTTP, as the workers reach a real one.
    carrier = _run.enter_context(FakeCarrierServer())
    _started["carrier"] = carrier
    os.environ.update(CARRIER_API_BASE=carrier.url, CARRIER_API_KEY=LOCAL_CARRIER_KEY, CARRIER_TIMEOUT_S="2")


def pytest_unconfigure(config: pytest.Config) -> None:
    from pipeline.adapters import process_adapters

    if process_adapters.cache_info().currsize:  # the worker fixture's adapters hold HTTP connections
        adapters = process_adapters()
        adapters.payments.close()
        adapters.carrier.close()
    _run.close()


@pytest.fixture(scope="session")
def servers() -> Servers:
    started = _started["servers"]
    assert isinstance(started, Servers)
    return started


@pytest.fixture
def db_url(servers: Servers) -> Iterator[str]:
    """The migrated test database, emptied after each test."""
    yield servers.database_url
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine_for(servers.database_url).begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def redis_client(servers: Servers) -> Iterator[redis.Redis]:
    """A client of the test run's private Redis, flushed before and after each test."""
    client = redis.Redis.from_url(servers.redis_url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    """The run's loopback Stripe, with faults and records reset around each test."""
    server = _started["stripe"]
    assert isinstance(server, FakeStripeServer)
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def carrier_server() -> Iterator[FakeCarrierServer]:
    """The run's local carrier, with faults and shipments reset around each test."""
    server = _started["carrier"]
    assert isinstance(server, FakeCarrierServer)
    server.reset()
    yield server
    server.reset()


@pytest.fixture(autouse=True)
def _close_test_adapters() -> Iterator[None]:
    """Adapter sets a test made with tests.edge_helpers.adapters_for hold HTTP connections: close them after it."""
    yield
    from tests.edge_helpers import close_opened

    close_opened()


@pytest.fixture
def worker(db_url: str, redis_client: redis.Redis) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker (8 threads) on the test Redis, running every saga actor."""
    import workers  # imported here, not at the top: the broker binds to REDIS_URL, set in pytest_configure

    broker = workers.broker.broker
    broker.flush_all()
    broker.emit_after("process_boot")
    running = dramatiq.Worker(broker, worker_threads=8, worker_timeout=50)
    running.start()
    yield running
    running.stop()
    broker.flush_all()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """A stream to hand `configure_logging`; the process's logging set-up is put back afterwards."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    named = [logging.getLogger(name) for name in (*UVICORN_LOGGERS, "stripe")]
    saved_named = [(logger.handlers[:], logger.propagate, logger.level) for logger in named]
    saved_structlog = structlog.get_config()
    yield io.StringIO()
    structlog.configure(**saved_structlog)
    root.handlers[:], root.level = saved_root
    for logger, (handlers, propagate, level) in zip(named, saved_named, strict=True):
        logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level
    structlog.contextvars.clear_contextvars()

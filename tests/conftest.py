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
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text

from models.db import engine_for
from models.tables import Base
from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY, get_settings
from pipeline.logs import UVICORN_LOGGERS
from scripts.devstack import localstack
from scripts.devstack.mail_sink import MailSink
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from workers.broker import install

# The URLs this test run talks to (database_url, redis_url).
Servers = localstack.Stack


@pytest.fixture(scope="session")
def _stack() -> Iterator[dict[str, object]]:
    """Start the servers on first use, and export their URLs to the settings the code under test reads.

    Postgres and Redis (the same code as the local stack), the loopback Stripe reached through the real SDK
    (a short timeout keeps in-doubt tests quick), the local carrier over real HTTP, and an SMTP server that
    keeps what it receives (the notifier stays NOTIFIER=local unless a test asks for smtp). A run of the unit
    tests alone starts none of them.
    """
    with ExitStack() as run:
        stack = run.enter_context(localstack.scratch_servers(os.environ.get("DATABASE_URL"), "orderflow_test"))
        os.environ.update(DATABASE_URL=stack.database_url, REDIS_URL=stack.redis_url)
        os.environ.setdefault("LOG_FORMAT", "console")
        stripe = run.enter_context(FakeStripeServer())
        os.environ.update(STRIPE_API_BASE=stripe.url, STRIPE_API_KEY=LOCAL_STRIPE_KEY, STRIPE_TIMEOUT_S="2")
        carrier = run.enter_context(FakeCarrierServer())
        os.environ.update(CARRIER_API_BASE=carrier.url, CARRIER_API_KEY=LOCAL_CARRIER_KEY, CARRIER_TIMEOUT_S="2")
        mail = run.enter_context(MailSink())
        os.environ.update(SMTP_HOST=mail.host, SMTP_PORT=str(mail.port), SMTP_TIMEOUT_S="2")
        get_settings.cache_clear()
        install(get_settings())  # what every entry point does: sends from the tests go to this Redis
        yield {"servers": stack, "stripe": stripe, "carrier": carrier, "mail": mail}
        _close_process_adapters()


def _close_process_adapters() -> None:
    from pipeline.adapters import process_adapters

    if process_adapters.cache_info().currsize:  # the worker fixture's adapters hold HTTP connections
        adapters = process_adapters()
        adapters.payments.close()
        adapters.carrier.close()


@pytest.fixture(scope="session")
def servers(_stack: dict[str, object]) -> Servers:
    started = _stack["servers"]
    assert isinstance(started, Servers)
    return started


@pytest.fixture(scope="session")
def saga_broker(servers: Servers) -> RedisBroker:
    """The broker with every saga actor declared on it, as the worker's entry point makes it."""
    from workers.saga import worker

    return worker.broker


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
def stripe_server(_stack: dict[str, object]) -> Iterator[FakeStripeServer]:
    """The run's loopback Stripe, with faults and records reset around each test."""
    server = _stack["stripe"]
    assert isinstance(server, FakeStripeServer)
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def carrier_server(_stack: dict[str, object]) -> Iterator[FakeCarrierServer]:
    """The run's local carrier, with faults and shipments reset around each test."""
    server = _stack["carrier"]
    assert isinstance(server, FakeCarrierServer)
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def mail_server(_stack: dict[str, object]) -> Iterator[MailSink]:
    """The run's SMTP server (SMTP_HOST, SMTP_PORT), with its messages and faults reset around each test."""
    server = _stack["mail"]
    assert isinstance(server, MailSink)
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
def worker(db_url: str, redis_client: redis.Redis, saga_broker: RedisBroker) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker (8 threads) on the test Redis, running every saga actor."""
    broker = saga_broker
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

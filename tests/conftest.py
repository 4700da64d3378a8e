"""Real servers for the tests: Postgres and Redis started by the same code as the local stack.

A test run gets its own fresh database (migrated to head) on the embedded or configured Postgres,
and its own private Redis server, so runs can happen side by side. Tables are truncated between
tests, not re-migrated.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from models import migrate
from models.db import engine_for
from models.tables import Base
from pipeline.config import LOCAL_STRIPE_KEY, PROJECT_ROOT
from scripts import localstack
from scripts.fake_stripe import FakeStripeServer


@dataclass(frozen=True)
class Servers:
    """The URLs this test run talks to."""

    database_url: str
    redis_url: str


_started: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Start the servers before test modules are imported: the Dramatiq broker binds at import."""
    database_url = _fresh_database()
    redis_home = Path(tempfile.mkdtemp(prefix="orderflow-redis-"))
    port = localstack._free_port()
    _started.update(process=localstack.start_redis(redis_home, port, daemonize=False), home=redis_home)
    _started["servers"] = Servers(database_url, f"redis://127.0.0.1:{port}/0")
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    os.environ.setdefault("LOG_FORMAT", "console")
    # The loopback Stripe, reached through the real SDK; a short timeout keeps in-doubt tests quick.
    stripe = FakeStripeServer().start()
    _started["stripe"] = stripe
    os.environ.update(STRIPE_API_BASE=stripe.url, STRIPE_API_KEY=LOCAL_STRIPE_KEY, STRIPE_TIMEOUT_S="2")


def pytest_unconfigure(config: pytest.Config) -> None:
    stripe = _started.get("stripe")
    if isinstance(stripe, FakeStripeServer):
        stripe.stop()
    process = _started.get("process")
    if isinstance(process, subprocess.Popen):
        process.terminate()
        process.wait(10)
    shutil.rmtree(str(_started.get("home", "")), ignore_errors=True)
    servers = _started.get("servers")
    if isinstance(servers, Servers):
        engine_for.cache_clear()
        url = make_url(servers.database_url)
        admin = url.set(database="postgres").render_as_string(hide_password=False)
        localstack.drop_database(admin, url.database or "")


@pytest.fixture(scope="session")
def servers() -> Servers:
    started = _started["servers"]
    assert isinstance(started, Servers)
    return started


def _fresh_database() -> str:
    """A new database named for this run, on DATABASE_URL's server or on the embedded one."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        base = make_url(configured.replace("postgresql://", "postgresql+psycopg://", 1))
    else:
        base = make_url(localstack.ensure_up(PROJECT_ROOT / ".localstack").database_url)
    name = f"orderflow_test_{secrets.token_hex(4)}"
    admin = base.set(database="postgres").render_as_string(hide_password=False)
    localstack.create_database(admin, name)
    url = base.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


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

"""Engine, sessions, and the two ways to open a transaction: `unit_of_work()` (ORM) and `transaction()` (Core)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import Any, cast

import psycopg
from sqlalchemy import ClauseElement, Connection, Engine, create_engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler

_engines: dict[tuple[str, int], Engine] = {}
# A worker thread can hold two connections at once (its step's transaction and the ledger's or a
# provider's own), so 8 threads need 16; a smaller pool made overflow connections churn (hundreds
# of new Postgres backends per benchmark run instead of 16).
POOL_SIZE = 20
# Postgres ends a session whose transaction sits idle this long, and with it the row locks it holds. A step's
# transaction is idle only while its thread waits (on a provider, at most STRIPE_TIMEOUT_S, or on the ledger's
# side connection): one idle for minutes belongs to a stuck thread, and would hold its order forever, out of
# the reaper's reach (it skips locked rows). The step then fails its commit and is retried like any other.
IDLE_IN_TRANSACTION_TIMEOUT = "120s"
_engines_lock = threading.Lock()


def engine_for(url: str, pool_size: int = POOL_SIZE) -> Engine:
    """One pooled engine per URL and process.

    No pre-ping: it doubled the round trips of every step. After a Postgres restart the first
    statement on a stale connection fails, SQLAlchemy drops the whole pool, and the step is
    retried like any transient failure (the chaos harness proves it). connect_timeout keeps a
    dead host from hanging a request or a health check.
    """
    with _engines_lock:
        if (url, pool_size) not in _engines:
            _engines[url, pool_size] = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size // 2,
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": 5,
                    "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}",
                },
            )
        return _engines[url, pool_size]


def dispose_engines() -> None:
    """Close every pooled connection of this process (before dropping a database, or at exit)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    session_factory.cache_clear()


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False, autoflush=False)


@contextmanager
def unit_of_work(url: str) -> Iterator[Session]:
    """A session in one transaction that commits only if the block returns; anything else rolls back."""
    session = session_factory(url)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def transaction(url: str) -> Iterator[Connection]:
    """A connection in one transaction that commits only if the block returns (SQLAlchemy Core, no ORM session).

    The saga's steps use this: the ORM's identity map and flush cost more CPU than the rest of a step.
    """
    with engine_for(url).begin() as connection:
        yield connection


@contextmanager
def single_statements(url: str) -> Iterator[Connection]:
    """A connection on which every statement commits by itself: no BEGIN and COMMIT, one round trip each.

    For a write that is one statement (the ledger's pre-charge row, a local provider's record): a transaction
    around it costs two more round trips, each a wake-up of the worker and of its Postgres backend.
    """
    with engine_for(url).connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")  # the pool resets it on check-in
        yield connection


@contextmanager
def savepoint(connection: Connection) -> Iterator[None]:
    """If the block raises, undo what it wrote (and only that) and re-raise; the transaction goes on usable.

    One round trip: the savepoint is never released, the transaction's commit ends it (SQLAlchemy's
    `begin_nested` sends a RELEASE, a second round trip, and compiles both through its execution path).
    """
    driver = _driver(connection)
    driver.execute("SAVEPOINT block")
    try:
        yield
    except Exception:
        driver.execute("ROLLBACK TO SAVEPOINT block")
        raise


def run(connection: Connection, statement: ClauseElement, parameters: Mapping[str, Any]) -> psycopg.Cursor[Any]:
    """Run a statement built once, as a prepared statement on the psycopg connection under `connection`.

    It runs in `connection`'s transaction, with psycopg's errors and plain tuples for rows. This skips what
    SQLAlchemy does on every call (cache lookup, parameter and result processing): on a saga step that was
    more CPU than psycopg's own work. Only for the hot path's statements, whose values psycopg takes as they
    are (no JSON to serialise, no IN list to expand).
    """
    sql, defaults = _compiled(statement, tuple(parameters))
    return _driver(connection).execute(sql, {**defaults, **parameters}, prepare=True)


def _driver(connection: Connection) -> psycopg.Connection[Any]:
    return cast(psycopg.Connection[Any], connection.connection.driver_connection)


def run_scalar(connection: Connection, statement: ClauseElement, parameters: Mapping[str, Any]) -> Any:
    """`run`, answering the first column of the first row (None without a row)."""
    row = run(connection, statement, parameters).fetchone()
    return row[0] if row else None


_PSYCOPG = psycopg_dialect()  # type: ignore[no-untyped-call]


@cache
def _compiled(statement: ClauseElement, names: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The statement's psycopg SQL for these parameter names, and the values of its own literals (`coalesce(x, 0)`).

    Like an execution, an INSERT or UPDATE without values() of its own writes the columns the names name. Only
    the literals come with it: a parameter the caller forgot fails in psycopg, as SQLAlchemy failed it, instead
    of going in as NULL.
    """
    compiled = statement.compile(dialect=_PSYCOPG, column_keys=list(names))
    assert isinstance(compiled, SQLCompiler)
    sql = str(compiled)
    if "POSTCOMPILE" in sql:
        raise ValueError("run() sends the SQL as compiled: write an IN list as = ANY(ARRAY[...])")
    return sql, {name: value for name, value in compiled.params.items() if not compiled.binds[name].required}


def mask_password(url: str) -> str:
    """The URL with its password replaced by ***, for error messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL too broken to parse is shown without anything after the scheme
        return url.split("://", 1)[0] + "://***"

"""The API's async Postgres pool: the hot routes (POST /v1/orders, the order list, /readyz) talk to Postgres on
the event loop, not from a thread.

The other routes use SQLAlchemy sessions from `models.db` on worker threads. On the hot paths a thread hop
per request costs more than the SQL: a worker thread holding the GIL stalls the event loop each
time the loop releases it (socket I/O), for up to the interpreter's 5 ms switch interval.

A hung Postgres (frozen, swapping, partitioned) accepts connections and never answers, so only our own clock
bounds a request: libpq's connect_timeout covers connecting only, and statement_timeout is the server's own,
so it does nothing while the server is frozen. `waited` stops waiting for a piece of work after its budget.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from api.errors import ApiError
from models.db import POOL_SIZE

T = TypeVar("T")
# Work we stopped waiting for, kept until it ends: the event loop holds tasks only weakly.
_unfinished: set[asyncio.Task[Any]] = set()


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def intake_pool(database_url: str, budget_s: float) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool for the serving event loop; autocommit, so each use says where its transaction is.

    Checking a connection out waits at most budget_s (a request behind one stuck on a hung server gives up
    with it), connecting too (libpq counts whole seconds, at least 2), and the server ends a statement that
    runs longer (a lock wait behind a stuck duplicate), freeing its connection soon after the answer went out.
    """
    options = f"-c statement_timeout={math.ceil(budget_s * 1000)}"
    pool = AsyncConnectionPool(
        libpq_url(database_url),
        min_size=1,
        max_size=POOL_SIZE,
        open=False,
        timeout=budget_s,
        kwargs={"autocommit": True, "connect_timeout": max(2, math.ceil(budget_s)), "options": options},
    )
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def waited(work: Coroutine[Any, Any, T], budget_s: float) -> asyncio.Task[T]:
    """Run `work` as its own task and wait for it at most budget_s: the task comes back done, or still running.

    A task still running is left to finish, not cancelled: psycopg's cancellation waits on the hung server
    itself (a cancel request, then the query: about 10 s), and a COMMIT already sent may land anyway. Left
    alone, it ends with a definite outcome as soon as the server answers again.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=budget_s)
    finally:
        if not task.done():
            keep(task)
    return task


async def read_within(work: Coroutine[Any, Any, T], budget_s: float) -> T:
    """The result of a read if Postgres gives it within budget_s; 503 NOT_READY otherwise (the read is cancelled).

    Unlike intake's transaction, a read writes nothing, so there is no outcome to wait for.
    """
    task = await waited(work, budget_s)
    if not task.done():
        task.cancel()  # psycopg cancels the query in the background and drops its connection
        raise ApiError(
            503, "NOT_READY", "the database did not answer in time; retry shortly", headers={"Retry-After": "1"}
        )
    return task.result()


def keep(task: asyncio.Task[Any]) -> None:
    """Hold a task nobody awaits until it ends."""
    _unfinished.add(task)
    task.add_done_callback(_unfinished.discard)

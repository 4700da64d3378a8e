"""The intake's own async Postgres pool: POST /v1/orders talks to Postgres on the event loop, not from a thread.

Every other route uses SQLAlchemy sessions from `models.db` on worker threads. Intake is the hot path, and a
thread hop per request costs more than its SQL: a worker thread holding the GIL stalls the event loop each
time the loop releases it (socket I/O), for up to the interpreter's 5 ms switch interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from models.db import POOL_SIZE

# How long a request waits for a connection (or to connect) before it is answered 503: Postgres is down.
WAIT_S = 5


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def intake_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool for the serving event loop; autocommit, so each use says where its transaction is."""
    pool = AsyncConnectionPool(
        libpq_url(database_url), min_size=1, max_size=POOL_SIZE, open=False, timeout=WAIT_S,
        kwargs={"autocommit": True, "connect_timeout": WAIT_S},
    )  # fmt: skip
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()

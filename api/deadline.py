"""POST /v1/orders answers within its budget when Postgres hangs, and the order's fate is settled afterwards.

The placement runs as its own task. When Postgres has not answered within INTAKE_DB_BUDGET_S the client gets
503 NOT_READY with Retry-After, and the task goes on: if its transaction commits once the server answers
again, the saga starts here (and the order's lease would start it anyway), and the client's retry with the same
Idempotency-Key replays the order. Nothing written is lost, and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.database import keep, waited
from api.errors import ApiError
from api.intake import Placed, place_order
from api.metrics import ApiMetrics
from models.schemas import OrderCreate
from pipeline.config import Settings
from pipeline.logs import get_logger

log = get_logger(__name__)
StartSaga = Callable[[uuid.UUID], Awaitable[None]]


async def place_in_time(
    pool: AsyncConnectionPool,
    client_id: str,
    key: str,
    body: OrderCreate,
    settings: Settings,
    metrics: ApiMetrics,
    start: StartSaga,
) -> Placed:
    """The placement's answer if Postgres gives it within the budget; 503 NOT_READY otherwise.

    Waiting for a connection counts against the budget too: a pool that cannot hand one out in time (every
    connection stuck on the hung server, or none can connect) means the same to the client.
    """
    order_id = uuid.uuid4()  # chosen before the transaction, so a 503 names the order it may still write
    placing = place_order(pool, client_id, key, body, settings.step_lease_s, order_id)
    task = await waited(placing, settings.intake_db_budget_s)
    no_connection = task.done() and isinstance(task.exception(), PoolTimeout)  # nothing was written
    if task.done() and not no_connection:
        return task.result()
    if not task.done():  # its transaction may still commit
        keep(asyncio.ensure_future(settle_late(task, order_id, metrics, start)))
    metrics.intake_not_ready.inc()
    log.warning(
        "intake.postgres_hung",
        order_id=str(order_id),
        client_id=client_id,
        idempotency_key=key,
        waited_for="a connection" if no_connection else "an answer",
        budget_s=settings.intake_db_budget_s,
    )
    raise ApiError(
        503,
        "NOT_READY",
        "the database did not answer in time; retry with the same Idempotency-Key",
        headers={"Retry-After": "1"},
    )


async def settle_late(task: asyncio.Task[Placed], order_id: uuid.UUID, metrics: ApiMetrics, start: StartSaga) -> None:
    """Follow a placement its client stopped waiting for: start the saga of an order it wrote, log how it ended."""
    try:
        placed = await task
    except Exception as error:  # nothing was written: the client's retry places the order
        log.info("intake.late_failure", order_id=str(order_id), error=repr(error)[:300])
        return
    if placed.replayed:
        log.info("intake.late_replay", order_id=str(placed.order_id))
        return
    metrics.orders_accepted.inc()
    log.warning("intake.late_commit", order_id=str(placed.order_id))
    await start(placed.order_id)

"""Liveness and readiness (no auth: probes call them). The metrics have their own port (api/metrics.py)."""

from __future__ import annotations

import asyncio

import psycopg
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from starlette.concurrency import run_in_threadpool

from api.database import read_within
from api.errors import ApiError, error_response
from api.openapi_docs import UNAVAILABLE

router = APIRouter(tags=["health"])
# Each readiness check's bound (they run side by side), well under the probe's 5 s timeout (deploy/k8s/api.yaml).
READY_WAIT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def liveness() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="Postgres answers (Redis is reported, not required)", responses=UNAVAILABLE)
async def readiness(request: Request) -> JSONResponse:
    """200 while Postgres answers in time, whatever Redis does; 503 NOT_READY when Postgres does not.

    Intake needs only Postgres: with Redis away an order is still committed, answered 201, and brought to its
    saga by its lease (the reaper), so taking the pods out of the Service for a Redis blip would turn a delay
    into refused orders. Redis's state is reported in both bodies, for people and dashboards.
    """
    postgres, redis_state = await asyncio.gather(
        postgres_check(request.app.state.intake_pool), run_in_threadpool(redis_check, request.app.state.redis)
    )
    checks = {"postgres": postgres, "redis": redis_state}
    if postgres == "ok":
        return JSONResponse({"status": "ready", "checks": checks})
    return error_response(503, "NOT_READY", "Postgres does not answer", checks)


async def postgres_check(pool: AsyncConnectionPool) -> str:
    """SELECT 1 on the intake's pool, given READY_WAIT_S: a hung server fails the check instead of the probe."""
    try:
        await read_within(select_one(pool), READY_WAIT_S)
    except ApiError:  # no answer in time (the read is cancelled)
        return f"unreachable (no answer within {READY_WAIT_S:g} s)"
    except psycopg.Error as error:
        return f"unreachable ({type(error).__name__})"
    return "ok"


async def select_one(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as connection:
        await connection.execute("SELECT 1")


def redis_check(client: redis.Redis) -> str:
    """PING; its client's 2 s socket timeout bounds it."""
    try:
        client.ping()
    except redis.RedisError as error:
        return f"unreachable ({type(error).__name__})"
    return "ok"

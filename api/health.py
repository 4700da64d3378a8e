"""Liveness, readiness and the Prometheus scrape endpoint (no auth: keep them on the internal network)."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import DatabaseUrl
from api.errors import error_response
from models.db import engine_for

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="Postgres and Redis answer", responses={503: {"description": "NOT_READY"}})
def readyz(request: Request, database_url: DatabaseUrl) -> JSONResponse:
    """200 when Postgres and Redis both answer; 503 NOT_READY naming the one that does not."""
    checks = {"postgres": postgres_check(database_url), "redis": redis_check(request.app.state.redis)}
    if all(result == "ok" for result in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return error_response(503, "NOT_READY", "a backing service does not answer", checks)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    payload, content_type = request.app.state.metrics.exposition()
    return Response(payload, media_type=content_type)


def postgres_check(database_url: str) -> str:
    try:
        with engine_for(database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return f"unreachable ({type(error).__name__})"
    return "ok"


def redis_check(client: redis.Redis) -> str:
    try:
        client.ping()
    except redis.RedisError as error:
        return f"unreachable ({type(error).__name__})"
    return "ok"

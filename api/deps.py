"""Typed FastAPI dependencies: settings, the database, the calling client (authenticated, rate limited, scoped).

Dependencies without I/O are `async def` so they run on the event loop instead of costing a thread hop each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from api.auth import Client, InvalidToken, authenticate
from api.errors import ApiError
from pipeline.config import Settings

bearer = HTTPBearer(auto_error=False, description="A JWT from `orderctl token`; scopes in its `scopes` claim.")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
MAX_OFFSET = 10_000_000


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def database_url(request: Request) -> str:
    return request.app.state.database_url  # type: ignore[no-any-return]


async def intake_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.intake_pool  # type: ignore[no-any-return]


async def enqueue(request: Request) -> Callable[[str], None]:
    return request.app.state.enqueue  # type: ignore[no-any-return]


async def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Client:
    """The client whose bearer token verifies; 401 otherwise."""
    if credentials is None:
        raise ApiError(401, "UNAUTHORIZED", "a bearer token is required", headers=CHALLENGE)
    try:
        return authenticate(credentials.credentials, request.app.state.jwt_keys)
    except InvalidToken as error:
        raise ApiError(401, "UNAUTHORIZED", str(error), headers=CHALLENGE) from None


async def rate_limited(request: Request, client: Annotated[Client, Depends(authenticated)]) -> Client:
    """The client, if its token bucket has a token left; 429 with Retry-After otherwise."""
    decision = await request.app.state.rate_limiter.take(client.id)
    if not decision.allowed:
        retry = str(decision.retry_after_s)
        raise ApiError(429, "RATE_LIMITED", f"too many requests; retry in {retry} s", headers={"Retry-After": retry})
    return client


def require(scope: str) -> Callable[[Client], Awaitable[Client]]:
    """A dependency that lets through only clients whose token grants `scope` (403 otherwise)."""

    async def scoped(client: Annotated[Client, Depends(rate_limited)]) -> Client:
        if not client.may(scope):
            raise ApiError(403, "FORBIDDEN", f"this token lacks the {scope!r} scope", {"requiredScope": scope})
        return client

    return scoped


async def idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]+$")] = None,
) -> str:
    """The required Idempotency-Key header (1-255 visible ASCII characters); 400 when absent."""
    if key is None:
        raise ApiError(400, "IDEMPOTENCY_KEY_REQUIRED", "POST /v1/orders needs an Idempotency-Key header")
    return key


SettingsDep = Annotated[Settings, Depends(app_settings)]
DatabaseUrl = Annotated[str, Depends(database_url)]
IntakePool = Annotated[AsyncConnectionPool, Depends(intake_pool)]
Enqueue = Annotated[Callable[[str], None], Depends(enqueue)]
Reader = Annotated[Client, Depends(require("orders:read"))]
Writer = Annotated[Client, Depends(require("orders:write"))]
Admin = Annotated[Client, Depends(require("admin"))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]

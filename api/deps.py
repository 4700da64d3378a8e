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
from api.metrics import ApiMetrics
from api.ratelimit import Decision, Verdict
from pipeline.config import Settings
from pipeline.logs import get_logger

log = get_logger(__name__)

bearer = HTTPBearer(auto_error=False, description="A JWT from `orderctl token`; scopes in its `scopes` claim.")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
UNKNOWN_ADDRESS = "unknown"  # a transport that names no peer (a unix socket): such callers share one bucket


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def database_url(request: Request) -> str:
    return request.app.state.database_url  # type: ignore[no-any-return]


async def intake_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.intake_pool  # type: ignore[no-any-return]


async def enqueue(request: Request) -> Callable[[str], None]:
    return request.app.state.enqueue  # type: ignore[no-any-return]


async def admitted(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Client:
    """The client whose bearer token verifies, within its rate; 401, or 429 with Retry-After, otherwise.

    Each 401 spends one of its address's failure tokens, and an address with none left is answered 429 whatever
    its token, so guessing keys runs at the refill rate and the answer never says whether a guess was right.
    """
    address = request.client.host if request.client else UNKNOWN_ADDRESS
    metrics: ApiMetrics = request.app.state.metrics
    settings: Settings = request.app.state.settings
    client, failure = None, None
    try:
        if credentials is None:
            raise InvalidToken("a bearer token is required", "missing")
        client = authenticate(
            credentials.credentials, request.app.state.jwt_keys, settings.jwt_audience, settings.jwt_issuer
        )
    except InvalidToken as error:
        failure = error
    decision: Decision = await request.app.state.admission.admit(address, client.id if client else None)
    if decision.verdict is Verdict.ADDRESS_THROTTLED:
        metrics.auth_throttled.inc()
        raise too_many(decision, "too many failed authentications from this address")
    if failure is not None:
        metrics.auth_failures.labels(failure.reason).inc()
        if decision.emptied:  # logged at most once per refill per address
            log.warning(
                "auth_failures_throttled",
                address=address,
                reason=failure.reason,
                per_min=settings.auth_failures_per_min,
                burst=settings.auth_failures_burst,
            )
        raise ApiError(401, "UNAUTHORIZED", str(failure), headers=CHALLENGE)
    if decision.verdict is Verdict.CLIENT_LIMITED:
        raise too_many(decision, "too many requests")
    assert client is not None
    return client


def too_many(decision: Decision, why: str) -> ApiError:
    retry = str(decision.retry_after_s)
    return ApiError(429, "RATE_LIMITED", f"{why}; retry in {retry} s", headers={"Retry-After": retry})


def require(scope: str) -> Callable[[Client], Awaitable[Client]]:
    """A dependency that lets through only clients whose token grants `scope` (403 otherwise)."""

    async def scoped(client: Annotated[Client, Depends(admitted)]) -> Client:
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

"""One error shape for every failure: JSON `{"code", "message", "details"?}`, never HTML or a traceback."""

from __future__ import annotations

from typing import Any

import psycopg
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pipeline.errors import IllegalTransition, OrderAlreadyShipped, OrderNotFound, PipelineError
from pipeline.logs import get_logger

log = get_logger(__name__)

MALFORMED_JSON = "MALFORMED_JSON"
HTTP_CODES = {
    400: MALFORMED_JSON,  # FastAPI raises a bare 400 only when it cannot read the body
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}
PROBED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PIPELINE_STATUSES: dict[type[PipelineError], int] = {
    OrderNotFound: 404,
    OrderAlreadyShipped: 409,
    IllegalTransition: 409,
}


class ApiError(Exception):
    """A failure the client can act on: an HTTP status, a stable code, a message and optional details."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details, headers


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors without the echoed input or non-JSON context: where, what, which rule."""
    return [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
    ]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    if any(d["type"] == "json_invalid" for d in details):
        return malformed_json(details)
    return error_response(422, "VALIDATION_ERROR", "the request is invalid", details)


def malformed_json(details: Any = None) -> JSONResponse:
    """400: the body is not JSON at all (a body that is JSON but breaks the rules is 422)."""
    return error_response(400, MALFORMED_JSON, "the request body is not valid JSON", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return malformed_json()
    code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route accepts at this path (Starlette names only the first route's)."""
    scope = request.scope
    allowed = [
        m
        for m in PROBED_METHODS
        if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in request.app.router.routes)
    ]
    return ", ".join(allowed)


async def _pipeline_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PipelineError)
    status = next((s for cls, s in PIPELINE_STATUSES.items() if isinstance(exc, cls)), None)
    if status is None:
        raise exc  # not a client error: the request middleware answers 500 and logs it
    return error_response(status, exc.code, exc.message, exc.details or None)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency_unavailable", error_type=type(exc).__name__)
    return error_response(
        503, "SERVICE_UNAVAILABLE", "a backing service is unavailable; retry shortly", headers={"Retry-After": "1"}
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception class the API knows to its JSON rendering."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PipelineError, _pipeline_error)
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(psycopg.OperationalError, _unavailable)  # the intake pool's (PoolTimeout included)
    app.add_exception_handler(redis.RedisError, _unavailable)

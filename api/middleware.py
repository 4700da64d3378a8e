"""ASGI middleware: request ids, access log and metrics around every request, and the body size limits."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.metrics import ApiMetrics
from pipeline.logs import get_logger

log = get_logger("api.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is reused only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID if it is well-formed, else a new one."""
    offered = Headers(scope=scope).get(REQUEST_ID_HEADER)
    return offered if offered and REQUEST_ID_PATTERN.match(offered) else uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label values), never the raw path."""
    route = scope.get("route")
    return str(getattr(route, "path", UNMATCHED_ROUTE))


def route_path(scope: Scope) -> str:
    """The path as routing matches it: without the root path the app is mounted under."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(f"{root}/") else path


class RequestContextMiddleware:
    """Binds the request id into structlog, echoes it, logs and measures the request, and turns a crash into 500."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("request_failed", method=scope["method"], path=scope["path"])
                if response_started:
                    raise
                response = error_response(500, "INTERNAL_ERROR", "internal error; quote the request id to support")
                await response(scope, receive, send_with_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_template(scope)
        self.metrics.observe(scope["method"], route, status, seconds)
        log.info("request", method=scope["method"], route=route, status=status, duration_ms=round(seconds * 1000, 2))


class BodyLimitMiddleware:
    """Reads at most the path's limit of a request body before the app sees it; a larger body gets 413 unread.

    `limits` gives paths under a prefix (ending in "/") their own limit, the longest prefix winning; every other
    path gets `max_bytes`.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = sorted((limits or {}).items(), key=lambda item: len(item[0]), reverse=True)

    def limit_of(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_of(route_path(scope))
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            await _too_large(max_bytes, scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > max_bytes:
                await _too_large(max_bytes, scope, receive, send)
                return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


async def _too_large(max_bytes: int, scope: Scope, receive: Receive, send: Send) -> None:
    message = f"the request body is larger than {max_bytes} bytes"
    await error_response(413, "PAYLOAD_TOO_LARGE", message, {"maxBytes": max_bytes})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the buffered body once, then defers to the server (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

"""The Starlette app: Stripe's /v1 routes over the in-memory Store, plus /_control for tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Fault, FaultInjector, Faults
from .objects import Json, Reply, decode_form, error_body, new_id
from .state import Store

Handler = Callable[[Store, Json, dict[str, Any]], Reply]
Endpoint = Callable[[Request], Awaitable[Response]]

_UNAUTHORIZED = error_body(
    "invalid_request_error",
    "You did not provide a valid API key. Provide your secret key (sk_test_...) as a Bearer token.",
)
_SERVER_ERROR = error_body("api_error", "Sorry, something went wrong on our end. (injected fault)")
_RATE_LIMITED = error_body("invalid_request_error", "Request rate limit exceeded. (injected fault)", code="rate_limit")


def _api_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "bearer" and key.startswith("sk_test_") else None


async def _stall(request: Request, seconds: float) -> None:
    """Hold the answer back until the client gives up (disconnects) or `seconds` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.02)


def _json(status: int, body: Json) -> Response:
    return JSONResponse(body, status, headers={"Request-Id": new_id("req")})


def _stripe_route(path: str, method: str, handler: Handler, store: Store, injector: FaultInjector) -> Route:
    """Wrap a Store operation with Stripe's auth, idempotency headers and the injected faults."""

    async def endpoint(request: Request) -> Response:
        api_key = _api_key(request)
        if api_key is None:
            return JSONResponse(_UNAUTHORIZED, 401, headers={"WWW-Authenticate": 'Bearer realm="Stripe"'})
        faults = injector.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = injector.draw()
        if fault is Fault.SERVER_ERROR:  # answered before the endpoint runs, so nothing is saved or applied
            return _json(500, _SERVER_ERROR)
        if fault is Fault.RATE_LIMIT:
            return _json(429, _RATE_LIMITED)
        raw = (await request.body()).decode() if method == "POST" else request.url.query
        pairs = parse_qsl(raw, keep_blank_values=True)
        try:
            params = decode_form(pairs)
        except ValueError as exc:
            return _json(400, error_body("invalid_request_error", str(exc), code="parameter_invalid_string"))
        idem_key = request.headers.get("idempotency-key") if method == "POST" else None
        fingerprint = (method, request.url.path, tuple(sorted(pairs)))
        status, body, replayed = store.execute(
            api_key, idem_key, fingerprint, lambda: handler(store, params, dict(request.path_params))
        )
        if fault is Fault.TIMEOUT:  # the effect above is applied; the caller never hears about it
            await _stall(request, faults.timeout_delay_s)
        headers = {"Request-Id": new_id("req"), "Stripe-Version": request.headers.get("stripe-version", "")}
        if idem_key:
            headers["Idempotency-Key"] = idem_key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status, headers=headers, media_type="application/json")

    return Route(path, endpoint, methods=[method])


async def _unknown_route(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    msg = f"Unrecognized request URL ({request.method}: {request.url.path})."
    return _json(status, error_body("invalid_request_error", msg))


def create_app(faults: Faults | None = None) -> Starlette:
    """A Stripe-compatible app with its own empty state; `faults` are also what /_control/reset restores."""
    store, injector, initial = Store(), FaultInjector(faults), faults or Faults()

    async def set_faults(request: Request) -> Response:
        try:
            injector.configure(Faults.from_mapping(json.loads(await request.body() or b"{}"), injector.faults))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(injector.faults.to_dict())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(injector.faults.to_dict())

    async def reset(request: Request) -> Response:
        store.reset()
        injector.configure(initial)
        return JSONResponse({"reset": True, "faults": initial.to_dict()})

    async def ledger(request: Request) -> Response:
        return JSONResponse(store.ledger())

    v1: list[tuple[str, str, Handler]] = [
        ("/v1/payment_intents", "POST", lambda s, p, _: s.create_intent(p)),
        ("/v1/payment_intents/search", "GET", lambda s, p, _: s.search_intents(p)),
        ("/v1/payment_intents/{id}", "GET", lambda s, p, a: (200, s.intent(a["id"]))),
        ("/v1/payment_intents/{id}/confirm", "POST", lambda s, p, a: s.confirm_intent(a["id"], p)),
        ("/v1/refunds", "POST", lambda s, p, _: s.create_refund(p)),
        ("/v1/refunds", "GET", lambda s, p, _: s.list_refunds(p)),
        ("/v1/refunds/{id}", "GET", lambda s, p, a: s.refund(a["id"])),
    ]
    routes = [_stripe_route(path, method, handler, store, injector) for path, method, handler in v1]
    routes += [
        Route("/_control/faults", set_faults, methods=["POST"]),
        Route("/_control/faults", get_faults, methods=["GET"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/ledger", ledger, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _unknown_route, 405: _unknown_route})
    app.state.store, app.state.injector = store, injector
    return app

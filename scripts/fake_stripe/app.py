"""The Starlette app: Stripe's /v1 routes over the in-memory Store, plus /_control for tests and dashboards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scripts.devstack.loopback import stall

from . import charges, intents, refunds
from .account import Account
from .dashboard import Control, control_routes
from .events import EventBus
from .faults import Fault, FaultInjector, Faults
from .objects import Json, Reply, decode_form, error_body, new_id
from .settling import Ticker
from .state import Store
from .webhooks import WebhookTarget

Handler = Callable[[Account, Json, dict[str, Any]], Reply]
Endpoint = Callable[[Request], Awaitable[Response]]

_UNAUTHORIZED = error_body(
    "invalid_request_error",
    "You did not provide a valid API key. Provide your secret key (sk_test_...) as a Bearer token.",
)
_SERVER_ERROR = error_body("api_error", "Sorry, something went wrong on our end. (injected fault)")
_RATE_LIMITED = error_body("invalid_request_error", "Request rate limit exceeded. (injected fault)", code="rate_limit")

V1: list[tuple[str, str, Handler]] = [
    ("/v1/payment_intents", "POST", lambda a, p, _: intents.create_intent(a, p)),
    ("/v1/payment_intents/search", "GET", lambda a, p, _: intents.search_intents(a, p)),
    ("/v1/payment_intents/{id}", "GET", lambda a, p, r: intents.retrieve_intent(a, r["id"], p)),
    ("/v1/payment_intents/{id}/confirm", "POST", lambda a, p, r: intents.confirm_intent(a, r["id"], p)),
    ("/v1/payment_intents/{id}/cancel", "POST", lambda a, p, r: intents.cancel_intent(a, r["id"], p)),
    ("/v1/charges/{id}", "GET", lambda a, p, r: charges.retrieve_charge(a, r["id"])),
    ("/v1/refunds", "POST", lambda a, p, _: refunds.create_refund(a, p)),
    ("/v1/refunds", "GET", lambda a, p, _: refunds.list_refunds(a, p)),
    ("/v1/refunds/{id}", "GET", lambda a, p, r: refunds.retrieve_refund(a, r["id"])),
]


def _api_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "bearer" and key.startswith("sk_test_") else None


def _json(status: int, body: Json) -> Response:
    return JSONResponse(body, status, headers={"Request-Id": new_id("req")})


def _stripe_route(path: str, method: str, handler: Handler, store: Store, injector: FaultInjector) -> Route:
    """Wrap an account operation with Stripe's auth, idempotency headers and the injected faults."""

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
        args = dict(request.path_params)
        status, body, replayed = store.execute(api_key, idem_key, fingerprint, lambda acct: handler(acct, params, args))
        if fault is Fault.TIMEOUT:  # the effect above is applied; the caller never hears about it
            await stall(request, faults.timeout_delay_s)
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


def create_app(faults: Faults | None = None, webhooks: WebhookTarget | None = None) -> Starlette:
    """A Stripe-compatible app with its own empty state; `faults` and `webhooks` are what /_control/reset restores."""
    injector = FaultInjector(faults)
    bus = EventBus(lambda: injector.faults, webhooks)
    store = Store(injector, bus)
    ticker = Ticker(store.tick)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bus.start()
        ticker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(ticker.stop)
            await asyncio.to_thread(bus.stop)

    control = Control(store, injector, bus, faults or Faults(), webhooks)
    routes = [_stripe_route(path, method, handler, store, injector) for path, method, handler in V1]
    routes += control_routes(control)
    handlers = {404: _unknown_route, 405: _unknown_route}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.store, app.state.injector, app.state.bus = store, injector, bus
    return app

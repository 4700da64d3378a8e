"""The Starlette app: the carrier's /v1 shipment routes over the in-memory Store, plus /_control for tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scripts.devstack.loopback import stall

from .faults import Fault, FaultInjector, Faults
from .objects import ApiFailure, Json, check_create, error_body, new_id
from .state import Store

Outcome = tuple[int, bytes, bool]  # status, body, replayed
Handler = Callable[[Request], Awaitable[Outcome]]
Endpoint = Callable[[Request], Awaitable[Response]]

_UNAUTHORIZED = error_body("unauthorized", "Provide a valid API key (ck_test_...) as a Bearer token.")
_SERVER_ERROR = error_body("server_error", "Something went wrong on our end. (injected fault)")


def _authorized(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and key.startswith("ck_test_")


def _json(status: int, body: Json) -> Response:
    return JSONResponse(body, status, headers={"Request-Id": new_id("req")})


def _failure(failure: ApiFailure) -> Outcome:
    status, body = failure.reply
    return status, json.dumps(body).encode(), False


def _carrier_route(path: str, method: str, handler: Handler, injector: FaultInjector) -> Route:
    """Wrap a handler with the carrier's auth, the injected faults and the idempotency headers."""

    async def endpoint(request: Request) -> Response:
        if not _authorized(request):
            return JSONResponse(_UNAUTHORIZED, 401, headers={"WWW-Authenticate": 'Bearer realm="localcarrier"'})
        faults = injector.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = injector.draw()
        if fault is Fault.SERVER_ERROR:  # answered before the handler runs, so nothing is saved or applied
            return _json(500, _SERVER_ERROR)
        status, body, replayed = await handler(request)
        # The effect above is applied and saved; the caller never hears about it. Only writes lose answers here:
        # the chaos harness needs the lookup that follows a lost create to get through now and then.
        if fault is Fault.LOST_ANSWER and method == "POST":
            await stall(request, faults.timeout_delay_s)
        headers = {"Request-Id": new_id("req")}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status, headers=headers, media_type="application/json")

    return Route(path, endpoint, methods=[method])


def _v1_routes(store: Store, injector: FaultInjector) -> list[Route]:
    async def create(request: Request) -> Outcome:
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            return _failure(ApiFailure(400, "idempotency_key_missing", "An Idempotency-Key header is required."))
        try:
            body = check_create(json.loads(await request.body()))
        except json.JSONDecodeError as exc:
            return _failure(ApiFailure(400, "invalid_request", f"the body is not valid JSON: {exc}"))
        except ApiFailure as failure:
            return _failure(failure)
        fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return store.execute(key, fingerprint, lambda: store.create(body, key, injector.faults.pickup_delay_s))

    async def find(request: Request) -> Outcome:
        key = request.query_params.get("idempotencyKey")
        if not key:
            return _failure(ApiFailure(400, "invalid_request", "the idempotencyKey query parameter is required"))
        return *store.run(lambda: store.find(key)), False

    async def read(request: Request) -> Outcome:
        return *store.run(lambda: store.shipment(request.path_params["id"])), False

    async def cancel(request: Request) -> Outcome:
        return *store.run(lambda: store.cancel(request.path_params["id"])), False

    handlers: list[tuple[str, str, Handler]] = [
        ("/v1/shipments", "POST", create),
        ("/v1/shipments", "GET", find),
        ("/v1/shipments/{id}", "GET", read),
        ("/v1/shipments/{id}/cancel", "POST", cancel),
    ]
    return [_carrier_route(path, method, handler, injector) for path, method, handler in handlers]


def _control_routes(store: Store, injector: FaultInjector, initial: Faults) -> list[Route]:
    async def set_faults(request: Request) -> Response:
        try:
            injector.configure(Faults.from_mapping(json.loads(await request.body() or b"{}"), injector.faults))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse(error_body("invalid_request", str(exc)), 400)
        return JSONResponse(injector.faults.to_dict())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(injector.faults.to_dict())

    async def reset(request: Request) -> Response:
        store.reset()
        injector.configure(initial)
        return JSONResponse({"reset": True, "faults": initial.to_dict()})

    async def ledger(request: Request) -> Response:
        return JSONResponse(store.ledger())

    async def pick_up(request: Request) -> Response:
        status, body = store.run(lambda: store.pick_up(request.path_params["id"]))
        return Response(body, status, media_type="application/json")

    return [
        Route("/_control/faults", set_faults, methods=["POST"]),
        Route("/_control/faults", get_faults, methods=["GET"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/ledger", ledger, methods=["GET"]),
        Route("/_control/shipments/{id}/pickup", pick_up, methods=["POST"]),
    ]


async def _unknown_route(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    code = "method_not_allowed" if status == 405 else "not_found"
    return _json(status, error_body(code, f"Unrecognized request URL ({request.method}: {request.url.path})."))


def create_app(faults: Faults | None = None) -> Starlette:
    """A carrier app with its own empty state; `faults` are also what /_control/reset restores."""
    store, injector, initial = Store(), FaultInjector(faults), faults or Faults()
    routes = _v1_routes(store, injector) + _control_routes(store, injector, initial)
    app = Starlette(routes=routes, exception_handlers={404: _unknown_route, 405: _unknown_route})
    app.state.store, app.state.injector = store, injector
    return app

"""The /_control API: faults, reset, ledger, events, webhooks, and what a shop owner does in the dashboard."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import disputes, intents, refunds
from .account import Account
from .events import EventBus
from .faults import FaultInjector, Faults
from .ledger import ledger
from .objects import Json, Reply, invalid
from .state import Store
from .webhooks import WebhookTarget

Endpoint = Callable[[Request], Awaitable[Response]]
Action = Callable[[Json, dict[str, Any]], Callable[[Account], Reply]]


@dataclass(frozen=True)
class Control:
    """What the control routes act on, and what /_control/reset restores."""

    store: Store
    injector: FaultInjector
    bus: EventBus
    faults: Faults
    webhooks: WebhookTarget | None


class BadBody(ValueError):
    """The control request's body is not the JSON object the route takes."""


async def _body(request: Request) -> Json:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


def _refund(body: Json, _: dict[str, Any]) -> Callable[[Account], Reply]:
    """POST /_control/refunds: a refund exactly as POST /v1/refunds makes it, its status optionally forced."""
    status = body.pop("status", None)
    params = {k: v if k == "metadata" else str(v) for k, v in body.items() if v is not None}
    if status not in (None, *refunds.STATUSES):
        return lambda _: invalid(f"status must be one of {', '.join(refunds.STATUSES)}", param="status")
    return lambda acct: refunds.create_refund(acct, params, status)


def _dispute(body: Json, _: dict[str, Any]) -> Callable[[Account], Reply]:
    """POST /_control/disputes: the cardholder's bank disputes the intent's charge."""
    intent, reason, amount = str(body.get("payment_intent", "")), body.get("reason") or "fraudulent", body.get("amount")
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
        return lambda _: invalid("amount must be an integer (minor units)", param="amount")
    return lambda acct: disputes.open_dispute(acct, intent, str(reason), amount)


def _close(body: Json, args: dict[str, Any]) -> Callable[[Account], Reply]:
    return lambda acct: disputes.close_dispute(acct, args["id"], str(body.get("status")))


def _settle_intent(body: Json, args: dict[str, Any]) -> Callable[[Account], Reply]:
    return lambda acct: intents.settle_intent(acct, args["id"], str(body.get("outcome")))


def _settle_refund(body: Json, args: dict[str, Any]) -> Callable[[Account], Reply]:
    return lambda acct: refunds.settle_refund(acct, args["id"], str(body.get("outcome")))


def _dashboard(store: Store, action: Action) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            op = action(await _body(request), dict(request.path_params))
        except BadBody as exc:
            return JSONResponse(invalid(str(exc))[1], 400)
        status, answer = store.control(op)
        return JSONResponse(answer, status)

    return endpoint


def control_routes(control: Control) -> list[Route]:
    """Every /_control route."""
    store, injector, bus = control.store, control.injector, control.bus

    async def set_faults(request: Request) -> Response:
        try:
            injector.configure(Faults.from_mapping(await _body(request), injector.faults))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(injector.faults.to_dict())

    async def get_faults(request: Request) -> Response:
        return JSONResponse(injector.faults.to_dict())

    async def reset(request: Request) -> Response:
        store.reset()
        injector.configure(control.faults)
        bus.reset(control.webhooks)
        return JSONResponse({"reset": True, "faults": control.faults.to_dict()})

    async def get_ledger(request: Request) -> Response:
        return JSONResponse(store.read(ledger))

    async def events(request: Request) -> Response:
        return JSONResponse(bus.events())

    async def get_webhooks(request: Request) -> Response:
        target = bus.target
        return JSONResponse(target.to_dict() if target else {"url": None, "secret": None})

    async def set_webhooks(request: Request) -> Response:
        try:
            body = await _body(request)
            target = WebhookTarget.create(str(body["url"]), body.get("secret"))
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"a webhook needs an http(s) url: {exc}"}, 400)
        bus.configure(target)
        return JSONResponse(target.to_dict())

    async def delete_webhooks(request: Request) -> Response:
        bus.configure(None)
        return JSONResponse({"url": None, "secret": None})

    actions: list[tuple[str, Action]] = [
        ("/_control/refunds", _refund),
        ("/_control/refunds/{id}/settle", _settle_refund),
        ("/_control/disputes", _dispute),
        ("/_control/disputes/{id}/close", _close),
        ("/_control/intents/{id}/settle", _settle_intent),
    ]
    return [
        Route("/_control/faults", set_faults, methods=["POST"]),
        Route("/_control/faults", get_faults, methods=["GET"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/ledger", get_ledger, methods=["GET"]),
        Route("/_control/events", events, methods=["GET"]),
        Route("/_control/webhooks", get_webhooks, methods=["GET"]),
        Route("/_control/webhooks", set_webhooks, methods=["POST"]),
        Route("/_control/webhooks", delete_webhooks, methods=["DELETE"]),
    ] + [Route(path, _dashboard(store, action), methods=["POST"]) for path, action in actions]

"""Signing in to the console with a token (admin, or console:read to look only) and signing out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.auth import InvalidToken, verify
from api.console.session import COOKIE, csrf_matches, may_use_console, open_session, sign_out
from api.console.web import PREFIX, SignedIn, console_of, render
from api.deps import UNKNOWN_ADDRESS
from api.ratelimit import Verdict
from pipeline.config import Settings
from pipeline.logs import get_logger

log = get_logger(__name__)
router = APIRouter(prefix=PREFIX, include_in_schema=False)
MAX_TOKEN_CHARS = 4096


@router.get("/sign-in")
def sign_in_page(request: Request, next: str = PREFIX) -> Response:
    return render(request, "sign_in.html", None, next=safe_next(next))


@router.post("/sign-in")
async def sign_in(
    request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)], next: Annotated[str, Form()] = PREFIX
) -> Response:
    """Trade a token for a session cookie; a refused token spends its address's failure budget, as on the API."""
    settings: Settings = request.app.state.settings
    metrics = request.app.state.metrics
    address = request.client.host if request.client else UNKNOWN_ADDRESS
    try:
        client, token_expires_at = verify(
            token.strip(), request.app.state.jwt_keys, settings.jwt_audience, settings.jwt_issuer
        )
        why = None if may_use_console(client) else "this token lacks the admin or console:read scope"
    except InvalidToken as error:
        client, token_expires_at, why = None, 0.0, str(error)
    if why is not None:
        decision = await request.app.state.admission.admit(address, None)
        metrics.console_sign_ins.labels("refused").inc()
        log.info("console_sign_in_refused", address=address, why=why)
        if decision.verdict is Verdict.ADDRESS_THROTTLED:
            why = f"too many failed sign-ins from this address; retry in {decision.retry_after_s} s"
            return render(request, "sign_in.html", None, 429, next=safe_next(next), error=why)
        return render(request, "sign_in.html", None, 401, next=safe_next(next), error=why)
    assert client is not None
    cookie, operator = open_session(
        client, token_expires_at, console_of(request).session_keys, settings.console_session_ttl_s
    )
    metrics.console_sign_ins.labels("signed_in").inc()
    log.info("console_signed_in", operator=operator.name, may_act=operator.may_act)
    landing = RedirectResponse(safe_next(next), status_code=303)
    secure = settings.console_secure_cookie or request.url.scheme == "https"
    landing.set_cookie(
        COOKIE,
        cookie,
        max_age=max(1, operator.expires_at - int(time.time())),
        path=PREFIX,
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    return landing


@router.post("/sign-out")
def sign_out_now(request: Request, operator: SignedIn, csrf: Annotated[str | None, Form()] = None) -> Response:
    if not csrf_matches(operator, csrf):
        return render(
            request, "error.html", operator, 403, message="this form is missing its CSRF token; reload the page"
        )
    sign_out(request.app.state.redis, operator)
    log.info("console_signed_out", operator=operator.name)
    gone = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    gone.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return gone


def safe_next(value: str) -> str:
    """Only a console page of this site: never an address elsewhere (no open redirect)."""
    if value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value
    return PREFIX

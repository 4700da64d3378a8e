"""What every console page shares: its templates, who is signed in, and errors as pages rather than JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.console.session import COOKIE, Operator, read_session, signed_out

HERE = Path(__file__).parent
PREFIX = "/console"
# Scripts and forms only from this site, never framed (no clickjacking of the action buttons). htmx adds a small
# <style> of its own, hence inline styles.
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


@dataclass(frozen=True)
class Console:
    """Built once per app by `api.console.install`."""

    templates: Jinja2Templates
    session_keys: list[bytes]


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page, and nothing runs."""


class ConsoleError(Exception):
    """A request the console refuses, shown as a page with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["ago"] = ago
    templates.env.filters["money"] = money
    templates.env.filters["when"] = when
    return templates


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def operator_of(request: Request) -> Operator:
    """The signed-in operator (SignInRequired without a live session)."""
    operator = read_session(request.cookies.get(COOKIE), console_of(request).session_keys)
    if operator is None or signed_out(request.app.state.redis, operator):
        raise SignInRequired
    return operator


def acting_operator(operator: Annotated[Operator, Depends(operator_of)]) -> Operator:
    """The signed-in operator, who must hold `admin`: a `console:read` operator sees, and cannot act."""
    if not operator.may_act:
        raise ConsoleError(403, "your sign-in is read-only (console:read); an admin token is needed to act")
    return operator


SignedIn = Annotated[Operator, Depends(operator_of)]
Acting = Annotated[Operator, Depends(acting_operator)]


def render(request: Request, name: str, operator: Operator | None, status: int = 200, **context: Any) -> HTMLResponse:
    page: HTMLResponse = console_of(request).templates.TemplateResponse(
        request, name, {"operator": operator, "prefix": PREFIX, **context}, status_code=status
    )
    page.headers["Cache-Control"] = "no-store"  # pages show live orders and carry a CSRF token
    page.headers["Content-Security-Policy"] = CSP
    page.headers["X-Frame-Options"] = "DENY"
    return page


async def sign_in_required(request: Request, exc: Exception) -> Response:
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    sign_in = f"{PREFIX}/sign-in?next={quote(back)}"
    if request.headers.get("HX-Request"):
        # The overview's own refresh: have htmx load the sign-in page, not swap it into the overview.
        return Response(status_code=204, headers={"HX-Redirect": sign_in})
    return RedirectResponse(sign_in, status_code=303)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    operator = read_session(request.cookies.get(COOKIE), console_of(request).session_keys)
    return render(request, "error.html", operator, exc.status, message=exc.message)


def ago(seconds: float | None) -> str:
    """90 -> "1m30s"; a negative lease "ran out 1m30s ago" is shown as "-1m30s"."""
    if seconds is None:
        return ""
    sign, left = ("-" if seconds < 0 else ""), int(abs(seconds))
    if left < 60:
        return f"{sign}{left}s"
    if left < 3600:
        return f"{sign}{left // 60}m{left % 60:02d}s"
    if left < 86400:
        return f"{sign}{left // 3600}h{left % 3600 // 60:02d}m"
    return f"{sign}{left // 86400}d{left % 86400 // 3600:02d}h"


def money(cents: int | None, currency: str = "") -> str:
    return "" if cents is None else f"{cents / 100:,.2f} {currency}".strip()


def when(value: str | datetime | None) -> str:
    """A stored time as an operator reads it: 2026-12-02 11:25:43 UTC (to the second)."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

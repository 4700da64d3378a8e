"""The operator console under /console: server-rendered pages over the operator functions `orderctl` uses."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import actions, pages, sign_in
from api.console.session import session_keys
from api.console.web import HERE, PREFIX, Console, ConsoleError, SignInRequired, make_templates, refused
from api.console.web import sign_in_required as to_sign_in


def install(app: FastAPI, jwt_keys: list[str]) -> None:
    """Serve the console on this app: its pages, its assets (all local: it works with no internet), its errors."""
    app.state.console = Console(make_templates(), session_keys(jwt_keys))
    for router in (sign_in.router, pages.router, actions.router):
        app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(ConsoleError, refused)

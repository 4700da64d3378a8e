"""The console's actions: retry, compensate, requeue or purge dead letters, on one or many at once.

Each goes in two steps. The preview runs the action as a dry run on every selected order (what `--dry-run`
prints) and asks for confirmation; only the confirmed form acts. Both are forms that carry the session's CSRF
token and need an `admin` sign-in. The actions are `workers.operator.actions`, the functions `orderctl` calls,
so each change is locked, re-checked and noted in the order's timeline the same way, with the operator's name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.console.session import Operator, csrf_matches
from api.console.web import PREFIX, Acting, ConsoleError, render
from pipeline.logs import get_logger
from workers.operator import actions as operations
from workers.operator.dead_letters import DeadLetter, dead_letters
from workers.operator.views import missing

log = get_logger(__name__)
router = APIRouter(prefix=PREFIX, include_in_schema=False)
MAX_SELECTED = 200  # one form acts on at most this many: a bigger sweep is `orderctl retry --all-stuck`, rate-limited
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class Action:
    label: str
    on_letters: bool


ACTIONS = {
    "retry": Action("Retry", on_letters=False),
    "compensate": Action("Compensate (cancel and undo)", on_letters=False),
    "requeue": Action("Requeue dead letters", on_letters=True),
    "purge": Action("Purge dead letters", on_letters=True),
}
Ids = Annotated[list[str], Form(default_factory=list)]
Csrf = Annotated[str | None, Form()]


@router.post("/actions/preview")
def preview(
    request: Request, operator: Acting, action: Annotated[str, Form()], ids: Ids, csrf: Csrf = None
) -> Response:
    """The blast radius: what the action would do to each selected order or letter, and a form to confirm it."""
    checked(operator, csrf, action, ids)
    changes = run(request, operator, action, ids, dry_run=True, reason="preview")
    return render(
        request, "confirm.html", operator, action=action, label=ACTIONS[action].label, ids=ids, changes=changes
    )


@router.post("/actions/run")
def confirmed(
    request: Request,
    operator: Acting,
    action: Annotated[str, Form()],
    ids: Ids,
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
    csrf: Csrf = None,
) -> Response:
    checked(operator, csrf, action, ids)
    changes = run(request, operator, action, ids, dry_run=False, reason=reason.strip() or f"console {action}")
    metrics = request.app.state.metrics
    for change in changes:
        outcome = "done" if change.ok else "refused"
        metrics.console_actions.labels(action, outcome).inc()
        log.info(
            "console_action",
            action=action,
            order_id=change.order_id,
            operator=operator.name,
            ok=change.ok,
            detail=change.detail,
        )
    return render(request, "results.html", operator, action=action, label=ACTIONS[action].label, changes=changes)


def checked(operator: Operator, csrf: str | None, action: str, ids: list[str]) -> None:
    """Refuse (nothing runs) a form without this session's CSRF token, an unknown action, or a bad selection."""
    if not csrf_matches(operator, csrf):
        raise ConsoleError(403, "this form is missing its CSRF token (or it is from another sign-in); reload the page")
    if action not in ACTIONS:
        raise ConsoleError(400, f"no action {action!r}; the console knows {', '.join(ACTIONS)}")
    if not ids:
        raise ConsoleError(400, "select at least one order or dead letter")
    if len(ids) > MAX_SELECTED:
        raise ConsoleError(400, f"select at most {MAX_SELECTED} at once; `orderctl` acts on more at a bounded rate")
    if not ACTIONS[action].on_letters:
        for value in ids:
            try:
                uuid.UUID(value)
            except ValueError:
                raise ConsoleError(400, f"not an order id: {value[:60]!r}") from None


def run(
    request: Request, operator: Operator, action: str, ids: list[str], *, dry_run: bool, reason: str
) -> list[operations.Change]:
    database_url = request.app.state.database_url
    note = operations.note(operator.name, reason)
    if ACTIONS[action].on_letters:
        client: redis.Redis = request.app.state.redis
        act_on = operations.requeue if action == "requeue" else operations.purge
        chosen = selected_letters(client, ids)
        return [act_on(database_url, client, letter, dry_run=dry_run, note=note) for letter in chosen]
    order_action: Callable[..., operations.Change] = operations.retry if action == "retry" else operations.compensate
    order_ids = list(dict.fromkeys(uuid.UUID(value) for value in ids))
    unknown = set(missing(database_url, order_ids))
    return [
        operations.Change(str(order_id), action, False, "no such order")
        if order_id in unknown
        else order_action(database_url, order_id, dry_run=dry_run, note=note)
        for order_id in order_ids
    ]


def selected_letters(client: redis.Redis, message_ids: list[str]) -> list[DeadLetter]:
    """The dead letters among the selected message ids (one already gone was handled by someone else)."""
    wanted = set(message_ids)
    return [letter for letter in dead_letters(client) if letter.message_id in wanted]

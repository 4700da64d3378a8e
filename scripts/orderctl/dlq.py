"""`orderctl dlq`: list dead-lettered messages, re-drive their orders, or drop them."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import redis
import typer

from scripts.orderctl.bulk import apply, report
from scripts.orderctl.options import AsJson, DryRun, Rate, Reason, note, order_ids
from scripts.orderctl.output import console, emit_json, table
from scripts.orderctl.servers import connect

if TYPE_CHECKING:
    from workers.operator.actions import Change
    from workers.operator.dead_letters import DeadLetter

dlq_app = typer.Typer(no_args_is_help=True, help="Dead-lettered messages: list them, re-drive their orders, drop them.")

Queue = Annotated[str | None, typer.Option("--queue", help="Only this queue's dead letters.")]
Orders = Annotated[list[str] | None, typer.Option("--order", help="Only the dead letters of this order (repeatable).")]


def letters(redis_url: str, queue: str | None, orders: list[str] | None) -> list[DeadLetter]:
    from workers.operator.dead_letters import dead_letters

    wanted = {str(order) for order in order_ids(orders or [])}
    with redis.Redis.from_url(redis_url) as client:
        found = dead_letters(client)
    return [one for one in found if queue in (None, one.queue) and (not wanted or one.order_id in wanted)]


@dlq_app.command("list")
def dlq_list(queue: Queue = None, order: Orders = None, as_json: AsJson = False) -> None:
    """Dead letters by queue, with their order ids, oldest first."""
    servers = connect()
    found = letters(servers.redis_url, queue, order)
    rows = [
        asdict(one) | {"failed_at": datetime.fromtimestamp(one.failed_at_ms / 1000, UTC).isoformat()} for one in found
    ]
    by_queue = dict(Counter(one.queue for one in found))
    if as_json:
        return emit_json({"count": len(rows), "by_queue": by_queue, "letters": rows})
    columns = ["queue", "actor", "order_id", "failed_at", "message_id"]
    console.print(table(f"dead letters: {len(rows)} {by_queue or ''}", rows, columns))


def drain(
    action: str, queue: str | None, orders: list[str] | None, dry_run: bool, rate: float, reason: str, as_json: bool
) -> None:
    servers = connect()
    from workers.operator import actions as operations

    found = letters(servers.redis_url, queue, orders)
    act_on = operations.requeue if action == "requeue" else operations.purge
    with redis.Redis.from_url(servers.redis_url) as client:

        def act(letter: DeadLetter) -> Change:
            return act_on(servers.database_url, client, letter, dry_run=dry_run, note=note(reason))

        changes = apply(action, found, act, float("inf") if dry_run else rate, as_json)
    report(f"dlq {action}", changes, dry_run, as_json)


@dlq_app.command("requeue")
def dlq_requeue(
    queue: Queue = None,
    order: Orders = None,
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "dead letter re-driven",
    as_json: AsJson = False,
) -> None:
    """Re-drive each dead letter's order from its recorded state (the stale message is not replayed), then drop it."""
    drain("requeue", queue, order, dry_run, rate, reason, as_json)


@dlq_app.command("purge")
def dlq_purge(
    queue: Queue = None,
    order: Orders = None,
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "dead letter purged",
    as_json: AsJson = False,
) -> None:
    """Drop dead letters without re-driving anything."""
    drain("purge", queue, order, dry_run, rate, reason, as_json)

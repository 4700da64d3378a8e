"""orderctl: run the local stack and operate orders from the command line."""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import redis
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.exc import ArgumentError, DBAPIError

from models.db import mask_password
from models.migrate import upgrade
from pipeline.config import Settings, get_settings
from scripts import chaos, localstack

if TYPE_CHECKING:
    from workers.deadletters import DeadLetter
    from workers.operations import Change

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-lettered messages: list them, re-drive their orders, drop them.")
app.add_typer(dlq_app, name="dlq")
console = Console()
errors = Console(stderr=True)
HANDFUL = 5  # bulk actions on more orders than this show a progress bar
T = TypeVar("T")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts, and nothing else, on stdout.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change, and change nothing.")]
Rate = Annotated[float, typer.Option("--rate", min=0.1, help="At most this many actions per second.")]
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded in each order's timeline.")]
OlderThan = Annotated[str, typer.Option("--older-than", help="No progress for this long counts as stuck: 90s, 5m, 2h.")]
Queue = Annotated[str | None, typer.Option("--queue", help="Only this queue's dead letters.")]
Orders = Annotated[list[str] | None, typer.Option("--order", help="Only the dead letters of this order (repeatable).")]


class CliError(Exception):
    """A failure to report in one line with a non-zero exit, never as a traceback."""


def stack() -> localstack.Stack:
    """The servers from DATABASE_URL / REDIS_URL, or the embedded ones, started on demand."""
    settings = get_settings()
    return localstack.resolve(settings.database_url, settings.redis_url, settings.stack_dir)


@app.command()
def up() -> None:
    """Bring Postgres and Redis up (embedded unless the URLs are set) and migrate the schema to head."""
    servers = stack()
    upgrade(servers.database_url)
    table = Table("service", "url", title="orderflow local stack")
    table.add_row("postgres", servers.database_url)
    table.add_row("redis", servers.redis_url)
    console.print(table)
    console.print("[green]schema at head[/green]")


@app.command()
def down() -> None:
    """Stop the embedded servers (their data stays under the stack folder)."""
    localstack.stop(get_settings().stack_dir)
    console.print("embedded servers stopped")


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, help="How many demo orders to place.")] = 300,
    rate: Annotated[float, typer.Option(min=1, help="Orders per second sent to the API.")] = 50,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Threads per worker process.")] = 8,
) -> None:
    """The main job: the whole local stack (API, workers, reaper, loopback Stripe) with demo orders flowing through."""
    from scripts import demo as demo_run

    up()
    if not demo_run.run(stack(), orders, rate, processes, threads):
        raise CliError("some orders did not reach a terminal state in time; see .localstack/demo.log")


@app.command()
def token(
    client: Annotated[str, typer.Option("--client", help="The client id (the token's `sub`), e.g. shop-1.")],
    scope: Annotated[list[str] | None, typer.Option("--scope", help="orders:read, orders:write, admin.")] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Seconds until the token expires.")] = 3600,
) -> None:
    """Print a bearer JWT for the intake API, signed with the first JWT_SECRETS entry (or the local stack's secret)."""
    from api.auth import mint_token, verification_keys

    try:
        typer.echo(mint_token(verification_keys(get_settings())[0], client, scope or [], ttl))
    except ValueError as error:
        raise CliError(str(error)) from None


def connect() -> localstack.Stack:
    """The servers, exported to the environment: the workers' broker reads REDIS_URL when first imported."""
    servers = stack()
    os.environ.update(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
    get_settings.cache_clear()
    return servers


def order_ids(values: Sequence[str]) -> list[uuid.UUID]:
    """Parse every id before anything runs: one typo fails the whole command, not half of it."""
    parsed = []
    for value in values:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            raise CliError(f"not an order id: {value!r}") from None
    return list(dict.fromkeys(parsed))


def known(database_url: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    from workers.operations import missing

    if unknown := missing(database_url, ids):
        raise CliError(f"no order {', '.join(map(str, unknown))}")
    return ids


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration like 90s, 5m or 2h", param_hint="--older-than")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def note(reason: str) -> str:
    """Who did it and why, for the order's timeline."""
    try:
        operator = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        operator = "unknown"
    return f"operator={operator} reason={reason!r}"


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], style: str = "") -> Table:
    # Fold rather than cut: an operator copies ids out of these tables.
    grid = Table(title=title, title_style=style, title_justify="left")
    for name in columns:
        grid.add_column(name, overflow="fold")
    for row in rows:
        grid.add_row(*(cell(row.get(name)) for name in columns))
    return grid


def cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def ago(value: float | None) -> str:
    if value is None:
        return "-"
    whole = abs(int(value))
    text = f"{whole // 3600}h{whole % 3600 // 60:02d}m" if whole >= 3600 else f"{whole // 60}m{whole % 60:02d}s"
    return ("-" if value < 0 else "") + text


def apply(label: str, items: Sequence[T], act: Callable[[T], Change], rate: float, quiet: bool) -> list[Change]:
    """Act on each item, at most `rate` a second, with a progress bar (on stderr) when there are more than a handful."""
    changes, start = [], time.monotonic()
    if not quiet and rate != float("inf") and len(items) > 1:
        errors.print(f"{label}: {len(items)} at most {rate:g}/s")
    with Progress(console=errors, transient=True, disable=quiet or len(items) <= HANDFUL) as progress:
        task = progress.add_task(label, total=len(items))
        for n, item in enumerate(items):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            changes.append(act(item))
            progress.advance(task)
    return changes


def report(action: str, changes: list[Change], dry_run: bool, as_json: bool) -> None:
    """Print what changed (or would), and exit 1 when any order was refused."""
    refused = sum(not change.ok for change in changes)
    if as_json:
        rows = [asdict(change) for change in changes]
        emit_json({"action": action, "dry_run": dry_run, "count": len(rows), "refused": refused, "changes": rows})
    else:
        title = f"{action}: {len(changes)}" + (" (dry run: nothing changed)" if dry_run else "")
        letters = any(change.message_id for change in changes)
        columns = ["order_id", "message_id", "ok", "detail"] if letters else ["order_id", "ok", "detail"]
        console.print(table(title, [asdict(change) for change in changes], columns))
    if refused:
        errors.print(f"[red]{refused} of {len(changes)} refused[/red]")
        raise typer.Exit(1)


@app.command()
def show(order_id: Annotated[str, typer.Argument(help="The order id.")], as_json: AsJson = False) -> None:
    """An order with its lines, its payment and its timeline."""
    [parsed] = order_ids([order_id])
    servers = connect()
    from workers.operations import order_story

    story = order_story(servers.database_url, parsed)
    if story is None:
        raise CliError(f"no order {parsed}")
    if as_json:
        return emit_json(story)
    console.print(table("order", [{"field": k, "value": v} for k, v in story["order"].items()], ["field", "value"]))
    console.print(table("lines", story["lines"], ["line_no", "product_id", "quantity", "unit_price_cents"]))
    payment = [story["payment"]] if story["payment"] else []
    console.print(table("payment", payment, ["status", "amount_cents", "refunded_cents", "intent_id", "error"]))
    steps = ["started_at", "kind", "step", "attempt", "outcome", "duration_ms", "error_code", "error_message"]
    console.print(table("timeline", story["timeline"], steps))


@app.command()
def stuck(
    older_than: OlderThan = "5m",
    limit: Annotated[int, typer.Option(min=1, help="List at most this many orders.")] = 200,
    as_json: AsJson = False,
) -> None:
    """Live orders that stopped moving (lease run out, or no progress), and the orders that need a person."""
    idle_s = seconds(older_than)
    servers = connect()
    from workers.operations import stuck as find_stuck

    found = find_stuck(servers.database_url, idle_s, limit)
    if as_json:
        return emit_json(found)
    columns = ["id", "status", "step", "age", "idle", "lease", "deliveries", "last_error"]
    live, parked = ([row | durations(row) for row in found[kind]] for kind in ("stuck", "needs_attention"))
    console.print(table(f"stuck: {len(live)} (lease run out, or no progress for {older_than})", live, columns))
    title = f"NEEDS ATTENTION: {len(parked)} (a compensation failed; `retry` re-runs it)"
    console.print(table(title, parked, columns, style="bold red"))


def durations(row: dict[str, Any]) -> dict[str, str]:
    # A negative lease ran out that long ago.
    return {"age": ago(row["age_s"]), "idle": ago(row["idle_s"]), "lease": ago(row["lease_left_s"])}


@app.command()
def retry(
    order_id: Annotated[list[str] | None, typer.Argument(help="Order ids.", show_default=False)] = None,
    all_stuck: Annotated[
        bool, typer.Option("--all-stuck", help="Every stuck live order (see `stuck`); needs_attention ones only by id.")
    ] = False,
    older_than: OlderThan = "5m",
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "manual retry",
    as_json: AsJson = False,
) -> None:
    """Re-drive orders from their recorded state; a needs_attention order re-runs its failed compensation."""
    if bool(order_id) == all_stuck:
        raise CliError("give order ids, or --all-stuck (not both)")
    ids, idle_s = order_ids(order_id or []), seconds(older_than)
    servers = connect()
    from workers import operations

    if all_stuck:
        ids = [uuid.UUID(row["id"]) for row in operations.stuck(servers.database_url, idle_s, 10_000)["stuck"]]
    known(servers.database_url, ids)

    def act(one: uuid.UUID) -> Change:
        return operations.retry(servers.database_url, one, dry_run=dry_run, note=note(reason))

    report("retry", apply("retry", ids, act, float("inf") if dry_run else rate, as_json), dry_run, as_json)


@app.command()
def compensate(
    order_id: Annotated[list[str], typer.Argument(help="Order ids.", show_default=False)],
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "manual cancel",
    as_json: AsJson = False,
) -> None:
    """Undo what the orders did (release stock, refund, ...) and cancel them; shipped orders are refused."""
    ids = order_ids(order_id)
    servers = connect()
    from workers import operations

    known(servers.database_url, ids)

    def act(one: uuid.UUID) -> Change:
        return operations.compensate(servers.database_url, one, dry_run=dry_run, note=note(reason))

    report("compensate", apply("compensate", ids, act, float("inf") if dry_run else rate, as_json), dry_run, as_json)


app.command("cancel", help="Alias of `compensate`.")(compensate)


def letters(redis_url: str, queue: str | None, orders: list[str] | None) -> list[DeadLetter]:
    from workers.deadletters import dead_letters

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


def drain(action: str, queue: str | None, orders: list[str] | None, dry_run: bool, rate: float, reason: str,
          as_json: bool) -> None:  # fmt: skip
    servers = connect()
    from workers import operations

    found = letters(servers.redis_url, queue, orders)
    act_on = operations.requeue if action == "requeue" else operations.purge
    with redis.Redis.from_url(servers.redis_url) as client:

        def act(letter: DeadLetter) -> Change:
            return act_on(servers.database_url, client, letter, dry_run=dry_run, note=note(reason))

        changes = apply(action, found, act, float("inf") if dry_run else rate, as_json)
    report(f"dlq {action}", changes, dry_run, as_json)


@dlq_app.command("requeue")
def dlq_requeue(queue: Queue = None, order: Orders = None, dry_run: DryRun = False, rate: Rate = 20,
                reason: Reason = "dead letter re-driven", as_json: AsJson = False) -> None:  # fmt: skip
    """Re-drive each dead letter's order from its recorded state (the stale message is not replayed), then drop it."""
    drain("requeue", queue, order, dry_run, rate, reason, as_json)


@dlq_app.command("purge")
def dlq_purge(queue: Queue = None, order: Orders = None, dry_run: DryRun = False, rate: Rate = 20,
              reason: Reason = "dead letter purged", as_json: AsJson = False) -> None:  # fmt: skip
    """Drop dead letters without re-driving anything."""
    drain("purge", queue, order, dry_run, rate, reason, as_json)


@app.command()
def stats(
    minutes: Annotated[int, typer.Option(min=1, max=1440, help="Throughput over this many minutes.")] = 10,
    as_json: AsJson = False,
) -> None:
    """Orders per state, queue depths, and orders reaching a terminal state per minute."""
    servers = connect()
    from workers.backlog import backlog
    from workers.operations import TERMINAL, order_counts, throughput

    with redis.Redis.from_url(servers.redis_url) as client:
        queues = {name: asdict(depth) for name, depth in backlog(client).items()}
    counts, per_minute = order_counts(servers.database_url), throughput(servers.database_url, minutes)
    finished = sum(row[status] for row in per_minute for status in TERMINAL)
    rate = {"minutes": minutes, "terminal_per_minute": round(finished / minutes, 2), "per_minute": per_minute}
    if as_json:
        return emit_json({"orders": counts, "queues": queues, "throughput": rate})
    console.print(table("orders", [{"status": k, "orders": v} for k, v in counts.items()], ["status", "orders"]))
    columns = ["queue", "ready", "delayed", "in_flight", "dead", "oldest_age_s"]
    console.print(table("queues", list(queues.values()), columns))
    title = f"reaching a terminal state per minute (avg {rate['terminal_per_minute']}/min over {minutes} min)"
    console.print(table(title, per_minute, ["minute", *TERMINAL]))


@app.command()
def audit(
    database_url: Annotated[str | None, typer.Option("--database-url", help="Default: DATABASE_URL.")] = None,
    stripe_url: Annotated[str | None, typer.Option("--stripe-url", help="Loopback Stripe: add its checks.")] = None,
    as_json: AsJson = False,
) -> None:
    """Check the ledgers (stock, money, deliveries), optionally against the provider's; exit 1 on any violation."""
    from pipeline.audit import audit as run_audit

    url = Settings(database_url=database_url).database_url if database_url else None
    url = url or get_settings().database_url or stack().database_url
    ledger = stripe_ledger(stripe_url) if stripe_url else None
    try:
        found = run_audit(url, ledger)
    except (DBAPIError, ArgumentError) as error:
        cause = error.orig if isinstance(error, DBAPIError) else error
        raise CliError(f"cannot audit {mask_password(url)}: {str(cause).strip().splitlines()[0]}") from None
    checks = [{"check": name, "count": len(ids), "ids": ids[:20]} for name, ids in found.items()]
    failed = sum(1 for check in checks if check["count"])
    if as_json:
        emit_json({"ok": not failed, "database": mask_password(url), "provider": ledger is not None, "checks": checks})
    else:
        console.print(table(f"audit of {mask_password(url)}", checks, ["check", "count", "ids"]))
        console.print(
            f"[red]{failed} checks failed[/red]" if failed else f"[green]all {len(checks)} checks pass[/green]"
        )
    if failed:
        raise typer.Exit(1)


def stripe_ledger(url: str) -> list[dict[str, Any]]:
    """The loopback Stripe server's own record of every PaymentIntent (its /_control/ledger)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/_control/ledger", timeout=5) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
            return found
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise CliError(f"cannot read the Stripe ledger at {mask_password(url)}: {error}") from None


app.command("chaos")(chaos.command)


def main() -> None:
    try:
        app()
    except (CliError, localstack.StackError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except (redis.RedisError, DBAPIError) as error:  # a server went away mid-command, or holds no orderflow schema
        cause = error.orig if isinstance(error, DBAPIError) else error
        typer.echo(f"error: {type(cause).__name__}: {(str(cause).strip() or '?').splitlines()[0]}", err=True)
        sys.exit(1)

"""Commands that report on the whole system: stats (orders, queues, throughput) and audit (the ledgers)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict
from typing import Annotated, Any

import redis
import typer
from sqlalchemy.exc import ArgumentError, DBAPIError

from models.db import mask_password
from pipeline.config import Settings, get_settings
from scripts.orderctl import options
from scripts.orderctl.options import AsJson
from scripts.orderctl.output import CliError, console, emit_json, table
from scripts.orderctl.servers import connect, stack

SINCE_HELP = (
    "Only the orders placed since then: 24h, 7d, or a date like 2026-11-01 (the stock is always checked whole)."
)


def stats(
    minutes: Annotated[int, typer.Option(min=1, max=1440, help="Throughput over this many minutes.")] = 10,
    as_json: AsJson = False,
) -> None:
    """Orders per open state (live, or needs_attention), queue depths, and orders reaching a terminal state per minute.

    Shipped and cancelled orders only accumulate, so they are shown as a rate, never counted whole.
    """
    servers = connect()
    from models.status import TERMINAL_VALUES
    from workers.backlog import backlog
    from workers.operator.views import open_counts, throughput

    with redis.Redis.from_url(servers.redis_url) as client:
        queues = {name: asdict(depth) for name, depth in backlog(client).items()}
    counts, per_minute = open_counts(servers.database_url), throughput(servers.database_url, minutes)
    finished = sum(row[status] for row in per_minute for status in TERMINAL_VALUES)
    rate = {"minutes": minutes, "terminal_per_minute": round(finished / minutes, 2), "per_minute": per_minute}
    if as_json:
        return emit_json({"orders": counts, "queues": queues, "throughput": rate})
    rows = [{"status": k, "orders": v} for k, v in counts.items()]
    console.print(table("orders not finished", rows, ["status", "orders"]))
    columns = ["queue", "ready", "delayed", "in_flight", "dead", "oldest_age_s"]
    console.print(table("queues", list(queues.values()), columns))
    title = f"reaching a terminal state per minute (avg {rate['terminal_per_minute']}/min over {minutes} min)"
    console.print(table(title, per_minute, ["minute", *TERMINAL_VALUES]))


def audit(
    database_url: Annotated[str | None, typer.Option("--database-url", help="Default: DATABASE_URL.")] = None,
    stripe_url: Annotated[str | None, typer.Option("--stripe-url", help="Loopback Stripe: add its checks.")] = None,
    carrier_url: Annotated[str | None, typer.Option("--carrier-url", help="Local carrier: add its checks.")] = None,
    since: Annotated[str | None, typer.Option("--since", help=SINCE_HELP)] = None,
    as_json: AsJson = False,
) -> None:
    """Check the ledgers (stock, money, deliveries), optionally against the provider's; exit 1 on any violation.

    Orders in flight are no violation; one whose lease ran out 15 minutes ago without the reaper moving it is.
    """
    from pipeline.audit import ALL_TIME_CHECKS, EVER, INFO
    from pipeline.audit import audit as run_audit

    window = options.since(since) if since else EVER

    url = Settings(database_url=database_url).database_url if database_url else None
    url = url or get_settings().database_url or stack().database_url
    ledger = stripe_ledger(stripe_url) if stripe_url else None
    shipments = stripe_ledger(carrier_url, "carrier") if carrier_url else None
    try:
        found = run_audit(url, ledger, shipments, since=window)
    except (DBAPIError, ArgumentError) as error:
        cause = error.orig if isinstance(error, DBAPIError) else error
        raise CliError(f"cannot audit {mask_password(url)}: {str(cause).strip().splitlines()[0]}") from None
    checks = [{"check": name, "count": len(ids), "ids": ids[:20]} for name, ids in found.items()]
    failed = sum(1 for check in checks if check["count"] and not str(check["check"]).startswith(INFO))
    if as_json:
        document = {"ok": not failed, "database": mask_password(url), "provider": ledger is not None}
        skipped = list(ALL_TIME_CHECKS) if since else []
        emit_json(document | {"since": window.isoformat() if since else None, "checks": checks, "skipped": skipped})
    else:
        placed = f", orders placed since {window.isoformat(timespec='seconds')}" if since else ""
        console.print(table(f"audit of {mask_password(url)}{placed}", checks, ["check", "count", "ids"]))
        if since:
            console.print(f"not with --since (all-time sums; run without it): {', '.join(ALL_TIME_CHECKS)}")
        console.print(
            f"[red]{failed} checks failed[/red]" if failed else f"[green]all {len(checks)} checks pass[/green]"
        )
    if failed:
        raise typer.Exit(1)


def stripe_ledger(url: str, provider: str = "Stripe") -> list[dict[str, Any]]:
    """A local provider's own records (its /_control/ledger): Stripe's intents, or the carrier's shipments."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/_control/ledger", timeout=5) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
            return found
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise CliError(f"cannot read the {provider} ledger at {mask_password(url)}: {error}") from None

"""The list bench (issue #14): `GET /v1/orders` at a million orders, next to the same requests on a near-empty table.

    .venv/bin/python -m scripts.bench.list --orders 1000000 --clients 100 --page-size 10 --samples 300
    (or .venv/bin/orderctl bench-list ...)

Two tables, each in a throwaway migrated database (on --database-url's server, else DATABASE_URL's, else the
embedded Postgres) with a private Redis and one uvicorn serving the real API (auth, rate limiter, ORM), side by side:

- empty: --baseline-per-client orders per client (default three pages); its deep page is that small list's last page;
- full: --orders orders across --clients clients (an equal share each), deep page --deep-page.

Both tables are written with COPY (oldest first, as a table grows: a year of created_at, terminal orders, one line
each, thousands of users per client) and then VACUUM ANALYZEd. Each round asks every case once of each table, for a
random client, sequentially on keep-alive connections, after unrecorded warm-up rounds; the API's access log gives
the server's side of each request, psutil the CPU per request of the API and of the database's backends. The deep
pages' cursors are computed in SQL (OFFSET) and encoded with api.pagination.encode_cursor; walking `next` from the
first page of --walk-clients clients and of admin's list must arrive at the same cursor, or the run fails.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from scripts.bench.config import in_stack_dir

ISSUE_TARGET = (1_000_000, 100, 1000)  # orders, clients, deep page: the conditions of issue #14's target


@dataclass(frozen=True)
class ListBenchConfig:
    """What to run; `run(ListBenchConfig(...))` is the whole list bench."""

    orders: int = 1_000_000
    clients: int = 100
    page_size: int = 10
    samples: int = 300
    warmup: int = 30
    deep_page: int = 1000
    baseline_per_client: int = 0  # 0: three pages
    walk_clients: int = 2
    target_ms: float = 20.0
    seed: int = 14
    database_url: str | None = None
    json_out: Path = field(default_factory=lambda: in_stack_dir("list-bench.json"))
    log_dir: Path = field(default_factory=lambda: in_stack_dir("bench-logs"))

    @property
    def small(self) -> int:
        return self.baseline_per_client or 3 * self.page_size

    def check(self) -> None:
        """ValueError unless every list asked for has the pages asked for."""
        share, needed = self.orders // max(1, self.clients), (self.deep_page - 1) * self.page_size + 1
        if self.clients < 1 or self.samples < 1 or self.deep_page < 2 or not 1 <= self.page_size <= 100:
            raise ValueError("need --clients >= 1, --samples >= 1, --deep-page >= 2 and --page-size 1..100")
        if share < needed:
            raise ValueError(
                f"page {self.deep_page} of {self.page_size} needs {needed:,} orders per client; "
                f"{self.orders:,} orders across {self.clients} clients give {share:,}"
            )
        if self.small <= self.page_size or not 0 <= self.walk_clients <= self.clients:
            raise ValueError("need --baseline-per-client > --page-size and --walk-clients <= --clients")


def run(config: ListBenchConfig) -> dict[str, Any]:
    """Load, measure and EXPLAIN both phases, print the tables, write the JSON; returns the JSON document."""
    # Imported on use: `orderctl` registers `command` and should start without psycopg, httpx or the API.
    from rich.console import Console

    from models.db import mask_password
    from pipeline.config import Settings
    from scripts.bench import list_data
    from scripts.bench.database import Target
    from scripts.bench.list_phase import CASES, prepare, run_phases
    from scripts.devstack import localstack

    config.check()
    console, started = Console(width=None if sys.stdout.isatty() else 160), datetime.now(UTC)
    clients, size, secret = list_data.client_ids(config.clients), config.page_size, secrets.token_urlsafe(32)
    document: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}}
    document["config"] |= {
        "baseline_per_client": config.small,
        "database_url": mask_password(config.database_url) if config.database_url else "local stack",
    }
    document["host"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]}
    document |= {"started_at": started.isoformat(), "load": {}}
    phases = (
        (
            "empty",
            config.small * config.clients,
            (math.ceil(config.small / size), math.ceil(config.small * config.clients / size)),
        ),
        ("full", config.orders, (config.deep_page,) * 2),
    )
    config.log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        tables = []
        for phase, orders, pages in phases:  # a database, a Redis and (later) an API each, so both run side by side
            base = config.database_url or Settings().database_url
            database_url = stack.enter_context(localstack.scratch_database(base, f"orderflow_list_{phase}"))
            target = Target(database_url, stack.enter_context(localstack.scratch_redis()), [], config.log_dir)
            products = list_data.seed_products(target.libpq())
            console.print(f"{phase}: loading {orders:,} orders across {config.clients} clients with COPY ...")
            load = document["load"][phase] = list_data.load(target.libpq(), orders, clients, products, config.seed)
            console.print(f"{phase}: loaded in {load['total_s']:.1f} s")
            tables.append(prepare(phase, target, clients, size, pages, secret))
        console.print(
            f"walking and measuring, deep pages {', '.join(f'{t.label} {t.deep[None].page}' for t in tables)}"
        )
        document |= run_phases(tables, secret, size, config.samples, config.warmup, config.walk_clients, config.seed)
    document["host"]["load_avg_1m_after"] = os.getloadavg()[0]
    empty, full = (document[p]["cases"] for p in ("empty", "full"))
    document["ratio_p99"] = {case: full[case]["p99_ms"] / empty[case]["p99_ms"] for case in CASES}
    document["verdicts"] = {case: full[case]["p99_ms"] < config.target_ms for case in CASES}
    as_specified = (config.orders, config.clients, config.deep_page) == ISSUE_TARGET
    document["targets"] = [
        {
            "target": f"{case} p99 < {config.target_ms:g} ms",
            "measured": full[case]["p99_ms"],
            "met": document["verdicts"][case],
            "as_specified": as_specified,
        }
        for case in CASES[:2]
    ]
    document["notes"] = [
        "deep-page cursors computed in SQL with encode_cursor; walking `next` from page 1 reached the same cursor for "
        + ", ".join(document["full"]["walk"]["lists"]),
        f"empty table: {config.small} orders per client; its deep page is the last page of that small list",
        "each table has its own database, Redis and API, served side by side and measured interleaved",
        "the API's metrics server listens on a free port of its own (scripts/bench/processes.api_server)",
        f"1-minute load average {document['host']['load_avg_1m']:.1f} at the start and "
        f"{document['host']['load_avg_1m_after']:.1f} at the end ({os.cpu_count()} CPUs for client, API, Postgres)",
    ]
    config.json_out.parent.mkdir(parents=True, exist_ok=True)
    config.json_out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    render(document, console)
    return document


def render(document: dict[str, Any], console: Any) -> None:
    """The cases side by side (empty table, full table, ratio, verdict), then the full table's query plans."""
    from rich.table import Table

    from scripts.bench.list_phase import CASES

    config, empty, full = document["config"], document["empty"], document["full"]
    title = (
        f"GET /v1/orders over HTTP, page size {config['page_size']}, {config['samples']} sequential requests per "
        "case and table, keep-alive, one uvicorn per table (ms; server: the API's own log)"
    )
    table = Table(
        "case",
        "page",
        f"empty ({config['baseline_per_client']}/client) p50",
        "p99",
        f"{config['orders']:,} orders p50",
        "p99",
        "p99 ratio",
        "server p50 / p99",
        f"p99 < {config['target_ms']:g} ms",
        "errors",
        title=title,
    )
    for case in CASES:
        before, after = empty["cases"][case], full["cases"][case]
        kind = "admin" if case.startswith("admin") else "client"
        page = f"{empty['pages'][kind]} / {full['pages'][kind]}" if case.endswith("deep page") else "1"
        verdict = "pass" if document["verdicts"][case] else "[red]FAIL[/red]"
        table.add_row(
            case,
            page,
            f"{before['p50_ms']:.1f}",
            f"{before['p99_ms']:.1f}",
            f"{after['p50_ms']:.1f}",
            f"{after['p99_ms']:.1f}",
            f"{document['ratio_p99'][case]:.2f}",
            f"{after['server_p50_ms']:.1f} / {after['server_p99_ms']:.1f}",
            verdict,
            str(before["errors"] + after["errors"]),
        )
    console.print(table)
    plans = Table(
        "case",
        "plan",
        "rows / scanned / filtered out",
        "buffers hit / read",
        "exec ms",
        "sort",
        title=f"EXPLAIN (ANALYZE, BUFFERS) of each case's query at {config['orders']:,} orders",
    )
    for case, plan in full["plans"].items():
        plans.add_row(
            case,
            plan["plan"],
            f"{plan['rows']:.0f} / {plan['rows_scanned']:.0f} / {plan['rows_removed']}",
            f"{plan['shared_hit']} / {plan['shared_read']}",
            f"{plan['execution_ms']:.3f}",
            "yes" if plan["sorted"] else "no",
        )
    console.print(plans)
    load, walk = document["load"]["full"], full["walk"]
    console.print(
        f"load: {load['orders']:,} orders + lines by COPY in {load['total_s']:.1f} s "
        f"(orders {load['copy_orders_s']:.1f} s, lines {load['copy_order_lines_s']:.1f} s, "
        f"VACUUM ANALYZE {load['vacuum_analyze_s']:.1f} s)"
    )
    console.print(
        f"walk: {walk['samples']} pages following `next` ({', '.join(walk['lists'])}): "
        f"p50 {walk['p50_ms']:.1f} ms, p99 {walk['p99_ms']:.1f} ms, max {walk['max_ms']:.1f} ms"
    )
    cpu = {phase: document[phase]["cpu_ms_per_request"] for phase in ("empty", "full")}
    console.print(
        "CPU per request: "
        + "; ".join(
            f"{phase} table: API {cpu[phase]['api']:.1f} ms, Postgres {cpu[phase]['postgres']:.2f} ms" for phase in cpu
        )
    )
    for note in document["notes"]:
        console.print(f"note: {note}")


def command(
    orders: int = typer.Option(1_000_000, help="Orders in the full table."),
    clients: int = typer.Option(100, help="Clients (shops) owning them, an equal share each."),
    page_size: int = typer.Option(10, help="`limit` of every request."),
    samples: int = typer.Option(300, help="Measured requests per case and phase."),
    warmup: int = typer.Option(30, help="Unrecorded rounds (every case once) before measuring."),
    deep_page: int = typer.Option(1000, help="The deep page measured on the full table (>= 2)."),
    baseline_per_client: int = typer.Option(0, help="Orders per client in the empty-table phase (0: three pages)."),
    walk_clients: int = typer.Option(2, help="Clients whose list is walked page by page to check the cursors."),
    target_ms: float = typer.Option(20.0, help="The p99 each case should stay under."),
    seed: int = typer.Option(14, help="Seed of the generated orders and of the request mix."),
    database_url: str = typer.Option(None, help="Postgres server for the throwaway database (default: local stack)."),
    json_out: str = typer.Option(None, help="Where to write the JSON results (default: STACK_DIR/list-bench.json)."),
) -> None:
    """Benchmark `GET /v1/orders` (first and deep pages, filters, admin) at N orders against a near-empty table."""
    config = ListBenchConfig(
        orders,
        clients,
        page_size,
        samples,
        warmup,
        deep_page,
        baseline_per_client,
        walk_clients,
        target_ms,
        seed,
        database_url,
        Path(json_out) if json_out else in_stack_dir("list-bench.json"),
    )
    try:
        config.check()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    run(config)


if __name__ == "__main__":
    typer.run(command)

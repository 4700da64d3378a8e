"""Commands that run the local stack: up, down, demo, serve, and a token for its API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from models.migrate import upgrade
from pipeline.config import get_settings
from scripts.orderctl.output import CliError, console
from scripts.orderctl.servers import stack

Processes = Annotated[int, typer.Option(min=1, help="Worker processes (the autoscaler's minimum).")]
Threads = Annotated[int, typer.Option(min=1, help="Threads per worker process.")]


def _port(variable: str, what: str) -> object:
    return typer.Option(min=1, max=65535, envvar=variable, help=f"Port of {what}.")


def up() -> None:
    """Bring Postgres and Redis up (embedded unless the URLs are set) and migrate the schema to head."""
    servers = stack()
    upgrade(servers.database_url)
    table = Table("service", "url", title="orderflow local stack")
    table.add_row("postgres", servers.database_url)
    table.add_row("redis", servers.redis_url)
    console.print(table)
    console.print("[green]schema at head[/green]")


def down() -> None:
    """Stop the embedded servers (their data stays under the stack folder)."""
    from scripts.devstack import localstack

    localstack.stop(get_settings().stack_dir)
    console.print("embedded servers stopped")


def demo(
    orders: Annotated[int, typer.Option(min=1, help="How many demo orders to place.")] = 300,
    rate: Annotated[float, typer.Option(min=1, help="Orders per second sent to the API.")] = 50,
    processes: Processes = 2,
    threads: Threads = 8,
) -> None:
    """The main job: the whole local stack (API, workers, reaper, loopback Stripe) with demo orders flowing through."""
    from scripts.devstack import demo as demo_run

    up()
    if not demo_run.run(stack(), orders, rate, processes, threads):
        raise CliError("some orders did not reach a terminal state in time; see .localstack/demo.log")


def serve(
    api_port: Annotated[int, _port("API_PORT", "the intake API")] = 8000,
    stripe_port: Annotated[int, _port("STRIPE_PORT", "the loopback Stripe")] = 12111,
    carrier_port: Annotated[int, _port("CARRIER_PORT", "the local carrier")] = 12112,
    api_metrics_port: Annotated[int, _port("API_METRICS_PORT", "the API's /metrics")] = 9190,
    worker_metrics_port: Annotated[int, _port("WORKER_METRICS_PORT", "the workers' /metrics")] = 9191,
    reaper_metrics_port: Annotated[int, _port("REAPER_METRICS_PORT", "the reaper's /metrics")] = 9192,
    webhook_metrics_port: Annotated[int, _port("WEBHOOK_METRICS_PORT", "the webhook workers' /metrics")] = 9193,
    smtp_port: Annotated[int, _port("SMTP_PORT", "the SMTP sink the workers send e-mail to")] = 2525,
    processes: Processes = 2,
    threads: Threads = 8,
) -> None:
    """The whole local stack, up until Ctrl-C: prints the API and docs URLs, tokens, providers and metrics."""
    from scripts.devstack import serve as serve_run
    from scripts.devstack.procfile import Ports, check_free

    ports = Ports(
        api_port,
        stripe_port,
        carrier_port,
        api_metrics_port,
        worker_metrics_port,
        reaper_metrics_port,
        webhook_metrics_port,
    )
    check_free(ports.named() | {"SMTP_PORT": smtp_port})
    with serve_run.own_servers(get_settings().stack_dir):
        up()
        serve_run.run(stack(), ports, smtp_port, processes, threads)


def token(
    client: Annotated[str, typer.Option("--client", help="The client id (the token's `sub`), e.g. shop-1.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="At least one, repeatable: orders:read, orders:write, admin, console:read."),
    ] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Seconds until the token expires.")] = 3600,
) -> None:
    """Print a bearer JWT for the intake API, signed with the first JWT_SECRETS entry (or the local stack's secret).

    It carries JWT_AUDIENCE and JWT_ISSUER as `aud` and `iss` when they are set.
    """
    from api.auth import SCOPES, mint_for

    if not scope:
        raise CliError(f"a token needs at least one --scope ({', '.join(sorted(SCOPES))})")
    try:
        typer.echo(mint_for(get_settings(), client, scope, ttl))
    except ValueError as error:
        raise CliError(str(error)) from None

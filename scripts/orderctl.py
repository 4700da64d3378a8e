"""orderctl: run the local stack and operate orders from the command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from models.migrate import upgrade
from pipeline.config import get_settings
from scripts import localstack

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
console = Console()


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
def demo() -> None:
    """The main job: bring the whole local stack up and migrate it."""
    up()


def main() -> None:
    try:
        app()
    except (CliError, localstack.StackError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)

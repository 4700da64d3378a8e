"""orderctl: run the local stack and operate orders from the command line."""

from __future__ import annotations

import importlib
import sys

import redis
import typer
from sqlalchemy.exc import DBAPIError

from scripts.orderctl.dlq import dlq_app
from scripts.orderctl.events import events_app
from scripts.orderctl.orders import compensate, retry, show, stuck
from scripts.orderctl.output import CliError
from scripts.orderctl.reports import audit, stats
from scripts.orderctl.stack_commands import demo, down, serve, token, up
from scripts.stack import StackError

__all__ = ["CliError", "app", "main"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
# `--help` lists the commands in this order (groups, like `dlq`, after them).
for command in (up, down, demo, serve, token, show, stuck, retry, compensate):
    app.command()(command)
app.command("cancel", help="Alias of `compensate`.")(compensate)
app.command()(stats)
app.command()(audit)
# The dev tools' code stays in the source tree (a plain `pip install .` has none of it) and their embedded servers
# come with orderflow[local]: there these commands, and demo, serve and down, end in one line (main), not a traceback.
SOURCE_TREE_ONLY = ("scripts.bench", "scripts.chaos", "scripts.devstack", "scripts.fake_stripe", "scripts.fake_carrier")


def _source_tree_only(error: ModuleNotFoundError) -> bool:
    return (error.name or "").startswith(SOURCE_TREE_ONLY)


def _add_source_tree_command(name: str, module: str) -> None:
    """Register `module.command`; without that module (a plain install), a stand-in raising the import's error."""
    try:
        app.command(name)(importlib.import_module(module).command)
    except ModuleNotFoundError as error:
        if not _source_tree_only(error):
            raise
        missing = error

        def unavailable() -> None:
            raise missing

        lenient = {"allow_extra_args": True, "ignore_unknown_options": True}
        needs = "Not in this install: needs the source tree and the `local` extra."
        app.command(name, help=needs, context_settings=lenient)(unavailable)


_add_source_tree_command("chaos", "scripts.chaos.run")
_add_source_tree_command("bench", "scripts.bench.run")
_add_source_tree_command("bench-list", "scripts.bench.list")
app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")


def main() -> None:
    try:
        app()
    except (CliError, StackError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except ModuleNotFoundError as error:
        if not _source_tree_only(error):
            raise
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        typer.echo(
            f"error: orderctl {command} needs the source tree and orderflow[local] ({error}): "
            "run it in a checkout, after pip install -e '.[dev,local]'",
            err=True,
        )
        sys.exit(1)
    except (redis.RedisError, DBAPIError) as error:  # a server went away mid-command, or holds no orderflow schema
        cause = error.orig if isinstance(error, DBAPIError) else error
        typer.echo(f"error: {type(cause).__name__}: {(str(cause).strip() or '?').splitlines()[0]}", err=True)
        sys.exit(1)

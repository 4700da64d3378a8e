"""orderctl: run the local stack and operate orders from the command line."""

from __future__ import annotations

import sys

import redis
import typer
from sqlalchemy.exc import DBAPIError

from scripts import bench, bench_list, chaos, localstack
from scripts.orderctl.dlq import dlq_app
from scripts.orderctl.orders import compensate, retry, show, stuck
from scripts.orderctl.output import CliError
from scripts.orderctl.reports import audit, stats
from scripts.orderctl.stack_commands import demo, down, token, up

__all__ = ["CliError", "app", "main"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__)
# `--help` lists the commands in this order (groups, like `dlq`, after them).
for command in (up, down, demo, token, show, stuck, retry, compensate):
    app.command()(command)
app.command("cancel", help="Alias of `compensate`.")(compensate)
app.command()(stats)
app.command()(audit)
app.command("chaos")(chaos.command)
app.command("bench")(bench.command)
app.command("bench-list")(bench_list.command)
app.add_typer(dlq_app, name="dlq")


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

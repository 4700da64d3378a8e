"""How orderctl answers: tables and JSON on stdout, notes on stderr, and failures as one line (`CliError`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


class CliError(Exception):
    """A failure to report in one line with a non-zero exit, never as a traceback."""


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

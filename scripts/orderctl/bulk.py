"""Bulk operator actions: act on many orders at a bounded rate, then report what changed (exit 1 on a refusal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.progress import Progress

from scripts.orderctl.output import console, emit_json, errors, table

if TYPE_CHECKING:
    from workers.operator.actions import Change

HANDFUL = 5  # bulk actions on more orders than this show a progress bar
T = TypeVar("T")


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

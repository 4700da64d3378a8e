"""What the operator types: the options the commands share, and checks that run before anything changes."""

from __future__ import annotations

import getpass
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from scripts.orderctl.output import CliError

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts, and nothing else, on stdout.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change, and change nothing.")]
Rate = Annotated[float, typer.Option("--rate", min=0.1, help="At most this many actions per second.")]
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded in each order's timeline.")]
OlderThan = Annotated[str, typer.Option("--older-than", help="No progress for this long counts as stuck: 90s, 5m, 2h.")]


def order_ids(values: Sequence[str]) -> list[uuid.UUID]:
    """Parse every id before anything runs: one typo fails the whole command, not half of it."""
    parsed = []
    for value in values:
        try:
            parsed.append(uuid.UUID(value))
        except ValueError:
            raise CliError(f"not an order id: {value!r}") from None
    return list(dict.fromkeys(parsed))


def seconds(value: str, option: str = "--older-than") -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration like 90s, 5m or 2h", param_hint=option)
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def since(value: str) -> datetime:
    """A moment: that long ago (24h, 7d) or a date and time (2026-11-01, 2026-11-01T12:00:00Z; UTC if no zone)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        try:
            return datetime.now(UTC) - timedelta(seconds=seconds(value, "--since"))
        except typer.BadParameter:
            raise typer.BadParameter(
                f"{value!r} is neither a duration like 24h or 7d nor a date like 2026-11-01", param_hint="--since"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def note(reason: str) -> str:
    """Who did it (the login name) and why, for the order's timeline."""
    from workers.operator.actions import note as timeline_note

    try:
        operator = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        operator = "unknown"
    return timeline_note(operator, reason)

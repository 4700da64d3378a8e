"""Statements per order, counted from the Postgres server's own log in a short pass of each chain.

Embedded Postgres has no pg_stat_statements, and counting in the client would miss what a library sends
on its own (BEGIN, COMMIT). So the pass turns on `log_statement = 'all'` for the throwaway database only
and counts the log lines of its sessions while the pass's orders run. Logging costs the server time, so
the pass is not one of the timed runs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from scripts.bench.config import BenchConfig
from scripts.bench.database import Target

# Enough orders that the per-order figure is steady (every order runs the same statements), few enough to be quick.
PASS_ORDERS, PASS_WARMUP = 100, 20
# `log_line_prefix` of the local stack ('%m [%p] '): the backend's pid, then the statement or the prepared execution.
_LINE = re.compile(r"\[(\d+)\] LOG:  (?:statement|execute [^:]+): (.*)")
_ENTRY = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # every entry starts with its time, '%m'
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})


@dataclass
class StatementLog:
    """The server's log file, read from where a pass started; `skip` holds the pids of the bench's own sessions."""

    path: Path
    start: int = 0
    end: int = 0
    skip: set[int] = field(default_factory=set)

    def mark_start(self) -> None:
        self.start = self.path.stat().st_size

    def mark_end(self) -> None:
        self.end = self.path.stat().st_size

    def counted(self, orders: int) -> dict[str, Any]:
        """Statements per order since `mark`, with BEGIN/COMMIT apart, and the most frequent ones."""
        with self.path.open("rb") as log:
            log.seek(self.start)
            text = log.read(self.end - self.start).decode("utf-8", "replace")
        kinds = Counter(" ".join(statement.split())[:100] for statement in logged(text, self.skip))
        control = sum(n for statement, n in kinds.items() if statement.split(" ")[0].upper() in _TRANSACTION_CONTROL)
        total = sum(kinds.values())
        return {
            "orders": orders,
            "per_order": total / orders,
            "transaction_control_per_order": control / orders,
            "queries_per_order": (total - control) / orders,
            "most_frequent": {statement: n / orders for statement, n in kinds.most_common(16)},
        }


def logged(text: str, skip: set[int]) -> list[str]:
    """The statements in a stretch of the log, each with its continuation lines, less those of the `skip` pids."""
    statements: list[list[str]] = []
    keep = False
    for line in text.splitlines():
        if _ENTRY.match(line):  # a new entry: a statement, its parameters (DETAIL), or anything else
            found = _LINE.search(line)
            keep = found is not None and int(found[1]) not in skip
            if found and keep:
                statements.append([found[2]])
        elif keep:  # the statement's next line, as the client sent it
            statements[-1].append(line)
    return [" ".join(parts) for parts in statements]


def server_log(target: Target) -> Path | None:
    """The local stack's log file, where the server writes its stderr (pg_ctl -l next to the data directory)."""
    with psycopg.connect(target.libpq(), autocommit=True) as database:
        row = database.execute("SELECT current_setting('data_directory', true)").fetchone()
    if not row or not row[0]:
        return None
    log = Path(row[0]).parent / "postgres.log"
    return log if log.is_file() else None


def count(phase: str, config: BenchConfig, target: Target) -> dict[str, Any] | None:
    """A short untimed pass of `phase` with every statement of the database logged; None where the log is not ours."""
    from scripts.bench.saga_phase import saga_run

    log_path = server_log(target)
    if log_path is None:
        target.note("Statements per order not counted: the Postgres server's log is not readable here")
        return None
    _log_statements(target, "SET log_statement = 'all'")
    try:
        small = replace(config, orders=PASS_ORDERS, warmup=PASS_WARMUP)
        log = StatementLog(log_path)
        saga_run(phase, small, target, repetition=config.repeat, statements=log)
        return log.counted(PASS_ORDERS)
    finally:
        _log_statements(target, "RESET log_statement")


def _log_statements(target: Target, setting: str) -> None:
    """Change the throwaway database's logging; its new sessions (the pass's workers) take it up."""
    with psycopg.connect(target.libpq(), autocommit=True) as database:
        database.execute(f'ALTER DATABASE "{target.dbname}" {setting}')

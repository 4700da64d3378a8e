"""The bench's JSON document: every run, their median and min-max, the paired ratio, and the issue's targets."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from models.db import mask_password
from scripts.bench.config import BenchConfig


def report(
    config: BenchConfig,
    results: dict[str, list[dict[str, Any]]],
    started: datetime,
    notes: list[str],
    statements: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Runs, their median and min-max, the paired ratio, and the targets of issue #17 next to what was measured.

    `statements` holds each chain's statement count (scripts/bench/statements.py), from a pass of its own.
    """
    document: dict[str, Any] = {
        "config": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
        | {
            "database_url": mask_password(config.database_url) if config.database_url else "local stack",
            "redis_url": mask_password(config.redis_url) if config.redis_url else "private server",
        },
        "host": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version()},
        "started_at": started.isoformat(),
        "notes": notes,
    }
    counted = statements or {}
    for phase, runs in results.items():
        document[phase] = {"runs": runs, "summary": summarize(runs)}
        if counted.get(phase):
            document[phase]["statements"] = counted[phase]
    if results.get("baseline") and results.get("orderflow"):
        pairs = zip(results["orderflow"], results["baseline"], strict=True)
        ratios = [of["orders_per_s"] / base["orders_per_s"] for of, base in pairs]
        document["ratio"] = {"orderflow_over_baseline_orders_per_s": _spread(ratios), "per_repetition": ratios}
    document["targets"] = targets(config, document)
    return document


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min-max of every number in the runs, keeping their nesting."""
    summary: dict[str, Any] = {}
    for key in dict.fromkeys(k for run in runs for k in run):
        values = [run[key] for run in runs if key in run]
        if all(isinstance(value, dict) for value in values):
            summary[key] = summarize(values)
            continue
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        summary[key] = _spread(numbers) if numbers else None
    return summary


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def targets(config: BenchConfig, document: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets (not asserted): met, missed, or measured under other conditions than the target's."""
    found: list[dict[str, Any]] = []
    if "ratio" in document:
        as_specified = (config.processes, config.threads) == (2, 8) and config.orders >= 5000
        value = document["ratio"]["orderflow_over_baseline_orders_per_s"]["median"]
        found.append(
            _target("orderflow >= 0.5 x baseline orders/s at 2x8, N >= 5000", value, value >= 0.5, as_specified)
        )
        cpu = document["orderflow"]["summary"]["cpu_s_per_order"]["total"]["median"]
        base_cpu = document["baseline"]["summary"]["cpu_s_per_order"]["total"]["median"]
        ratio = cpu / base_cpu if base_cpu else float("inf")
        found.append(_target("total CPU per order <= 2 x baseline's", ratio, ratio <= 2, as_specified))
    if document.get("intake"):
        value = document["intake"]["summary"]["open"]["p99_ms"]["median"]
        found.append(_target("intake p99 < 20 ms at 200 orders/s", value, value < 20, config.intake_rate == 200))
    if document.get("orderflow"):
        value = document["orderflow"]["summary"]["peak_rss_mib_per_worker"]["max"]
        found.append(_target("peak RSS per worker < 120 MiB", value, value < 120, True))
    return found


def _target(name: str, value: float, met: bool, comparable: bool) -> dict[str, Any]:
    return {"target": name, "measured": value, "met": met, "as_specified": comparable}

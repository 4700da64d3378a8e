"""The bench's tables: the two chains side by side, intake, and the targets, from the JSON document."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def render(document: dict[str, Any], console: Console | None = None) -> None:
    """Print the chains side by side, intake, and the targets."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    config = document["config"]
    base, flow = (document.get(p, {}).get("summary") for p in ("baseline", "orderflow"))
    if base or flow:
        title = (
            f"saga: {config['orders']} orders x {config['repeat']} repetitions, {config['processes']} processes x "
            f"{config['threads']} threads, {config['products']} products, warm-up {config['warmup']} (median, min-max)"
        )
        table = Table("", "baseline (bare chain)", "orderflow (real saga)", "orderflow / baseline", title=title)
        ratio = document.get("ratio", {}).get("orderflow_over_baseline_orders_per_s")
        table.add_row("orders/s", _cell(base, "orders_per_s"), _cell(flow, "orders_per_s"), _fmt(ratio, "{:.2f}"))
        table.add_row("seconds for N orders", _cell(base, "seconds"), _cell(flow, "seconds"), "")
        table.add_row(
            "shipped / not shipped",
            _cell(base, "shipped", "{:.0f}") + " / " + _cell(base, "not_shipped", "{:.0f}"),
            _cell(flow, "shipped", "{:.0f}") + " / " + _cell(flow, "not_shipped", "{:.0f}"),
            "",
        )
        for key, label in (
            ("commits_per_order", "Postgres commits / order"),
            ("rollbacks_per_order", "Postgres rollbacks / order"),
            ("connections_opened", "Postgres connections opened"),
            ("orders_updates_per_order", "orders row updates / order"),
            ("orders_hot_update_share", "share of them HOT"),
            ("orders_dead_per_live", "orders dead rows / live row, after"),
            ("orders_autovacuums", "orders autovacuum runs"),
            ("orders_heap_bytes_per_row", "orders heap bytes / live row"),
            ("orders_index_bytes_per_row", "orders index bytes / live row"),
        ):
            table.add_row(label, _cell(base, key, "{:.2f}"), _cell(flow, key, "{:.2f}"), _quotient(flow, base, key))
        # Counted in an untimed pass of each chain (scripts/bench/statements.py): one figure, not a spread.
        counted = [document.get(p, {}).get("statements") or {} for p in ("baseline", "orderflow")]
        for key, label in (
            ("per_order", "Postgres statements / order"),
            ("transaction_control_per_order", "  of them BEGIN / COMMIT"),
        ):
            under, over = (c.get(key) for c in counted)
            ratio = f"{over / under:.2f}x" if over and under else ""
            table.add_row(label, _fmt_value(under, "{:.2f}"), _fmt_value(over, "{:.2f}"), ratio)
        for group in ("workers", "postgres", "redis", "stripe", "total"):
            path = f"cpu_s_per_order.{group}"
            table.add_row(
                f"CPU ms / order: {group}",
                _cell(base, path, "{:.2f}", 1000),
                _cell(flow, path, "{:.2f}", 1000),
                _quotient(flow, base, path),
            )
        key = "peak_rss_mib_per_worker"
        table.add_row("peak RSS / worker process, MiB", _cell(base, key, "{:.0f}"), _cell(flow, key, "{:.0f}"), "")
        console.print(table)
    intake = document.get("intake", {}).get("summary")
    if intake:
        processes = config.get("api_processes", 1)
        served = f"{processes} API process{'es' if processes > 1 else ''} (python -m api.serve)"
        title = f"intake: POST /v1/orders, {served}, {config['intake_seconds']:.0f} s per loop"
        table = Table("", "orders/s", "p50 ms", "p99 ms", "errors", title=title)
        for loop, label in (
            ("closed", f"closed loop, {config['intake_concurrency']} clients"),
            ("open", f"open loop at {config['intake_rate']:.0f}/s"),
        ):
            table.add_row(
                label,
                _cell(intake, f"{loop}.per_s"),
                _cell(intake, f"{loop}.p50_ms"),
                _cell(intake, f"{loop}.p99_ms"),
                _cell(intake, f"{loop}.errors", "{:.0f}"),
            )
        cpu = ", ".join(
            f"{g} {_cell(intake, f'cpu_s_per_order.{g}', '{:.2f}', 1000)}"
            for g in ("api", "postgres", "redis", "total")
            if intake["cpu_s_per_order"].get(g)
        )
        table.add_row("commits / order", _cell(intake, "commits_per_order"), "", "", "")
        table.add_row("CPU ms / order", cpu, "", "", "")
        table.add_row("peak RSS of the API, MiB", _cell(intake, "peak_rss_mib_api", "{:.0f}"), "", "", "")
        console.print(table)
    if document["targets"]:
        table = Table("target (issue #17, not asserted)", "measured", "verdict", title="targets")
        for target in document["targets"]:
            verdict = "met" if target["met"] else "missed"
            table.add_row(
                target["target"],
                f"{target['measured']:.2f}",
                verdict if target["as_specified"] else f"{verdict} (other conditions)",
            )
        console.print(table)
    growth = document.get("growth")
    if growth:
        load = growth["load"]
        title = (
            f"growth: the same runs after loading {load['orders']:,} terminal orders of {load['clients']} clients"
            f" over 12 months ({load['total_s']:.0f} s to COPY, plus their timelines, payments, keys and events)"
        )
        table = Table("", "empty database", "with the history", "ratio", title=title)
        for row in growth["rows"]:
            table.add_row(row["measure"], _fmt_value(row["empty"]), _fmt_value(row["history"]), _fmt_ratio(row))
        console.print(table)
        if growth.get("retention"):
            console.print(_retention_table(growth["retention"]))
    for note in document["notes"]:
        console.print(f"note: {note}")


def _retention_table(found: dict[str, Any]) -> Table:
    """The saga on the history, alone and with the retention pass draining the old rows beside it."""
    title = "retention beside the saga, on the history (the reaper's pass back to back, one more saga run)"
    table = Table("", "saga alone (median)", "saga + retention", "ratio", title=title)
    alone, beside = found["saga_alone_orders_per_s"], found["saga_with_retention_orders_per_s"]
    table.add_row("saga orders/s", _fmt_value(alone), _fmt_value(beside), _fmt_ratio(found))
    pruned = ", ".join(f"{table} {rows:,}" for table, rows in sorted(found["rows_pruned"].items()))
    table.add_row("rows pruned", "", pruned or "none", "")
    table.add_row("rows pruned / s", "", _fmt_value(found["rows_pruned_per_s"]), "")
    median, longest = (_fmt_value(found[key]) for key in ("pass_median_ms", "pass_max_ms"))
    passes = f"{found['passes']}, median {median} ms, max {longest} ms"
    table.add_row("retention passes", "", passes, "")
    return table


def _fmt_value(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _fmt_ratio(row: dict[str, Any]) -> str:
    return "-" if row["ratio"] is None else f"{row['ratio']:.2f}"


def _lookup(summary: dict[str, Any] | None, path: str) -> dict[str, float] | None:
    node: Any = summary
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and "median" in node else None


def _cell(summary: dict[str, Any] | None, path: str, fmt: str = "{:.1f}", scale: float = 1) -> str:
    spread = _lookup(summary, path)
    if spread is None:
        return "-"
    median, low, high = (spread[k] * scale for k in ("median", "min", "max"))
    if low == high:
        return fmt.format(median)
    return f"{fmt.format(median)} ({fmt.format(low)}-{fmt.format(high)})"


def _fmt(spread: dict[str, float] | None, fmt: str) -> str:
    if spread is None:
        return "-"
    return f"{fmt.format(spread['median'])} ({fmt.format(spread['min'])}-{fmt.format(spread['max'])})"


def _quotient(top: dict[str, Any] | None, bottom: dict[str, Any] | None, path: str) -> str:
    over, under = _lookup(top, path), _lookup(bottom, path)
    if not over or not under or not under["median"]:
        return ""
    return f"{over['median'] / under['median']:.2f}x"

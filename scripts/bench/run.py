"""The benchmark (issues #8, #17): the saga next to the cheapest five-step Dramatiq + Postgres chain, and intake.

    .venv/bin/python -m scripts.bench.run --orders 5000 --processes 2 --threads 8 --repeat 3

On a throwaway database (on --database-url's server, else DATABASE_URL's, else the embedded Postgres) and a
private Redis (or --redis-url, which must be an empty, dedicated Redis database), each repetition runs:

- baseline: `dramatiq scripts.bench.chain:setup`, five bare actors, one statement and one commit per step;
- orderflow: `dramatiq workers.saga.worker` (the real actors) with the loopback Stripe (no faults) as subprocesses;
- intake: one uvicorn serving the real API, driven closed loop (fixed concurrency) then open loop (fixed rate).

Both chains get the same orders (one line each, round-robin over --products well-stocked products; 1 makes one
hot row), written in bulk and sent to their first step;
the clock runs from the first send until every order is terminal, after a warm-up through the same processes.
Postgres commits per order come from pg_stat_database of the throwaway database, read once its connections
are gone (backends flush their counters when they exit). CPU is user+system of each process group (psutil;
Postgres = the backends connected to the throwaway database; Redis = its INFO cpu). Baseline and orderflow
alternate which goes first, and each repetition pairs them for the ratio.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scripts.bench.config import BenchConfig, in_stack_dir

if TYPE_CHECKING:
    from scripts.bench.database import Target

__all__ = ["BenchConfig", "command", "run"]


def run(config: BenchConfig) -> dict[str, Any]:
    """Run every phase `config.repeat` times, print the tables, write the JSON; returns the JSON document."""
    # Imported on use: `orderctl` registers `command` from this module and should start without psutil or Dramatiq.
    from scripts.bench import statements
    from scripts.bench.database import bench_target
    from scripts.bench.report import report
    from scripts.bench.tables import render

    started = datetime.now(UTC)
    growth: dict[str, Any] | None = None
    with bench_target(config) as target:
        results = phases(config, target)
        chains = [phase for phase in ("baseline", "orderflow") if phase in config.phases]
        counted: dict[str, dict[str, Any] | None] = {p: statements.count(p, config, target) for p in chains}
        if config.history:
            from scripts.bench import growth as history

            empty = {"phases": results, "operator_ms": history.operator_reads(target)}
            loaded = history.load_history(target, config.history)
            after = {"phases": phases(config, target), "operator_ms": history.operator_reads(target)}
            after["orders_at_reads"] = history.order_count(target)
            growth = {"load": loaded, "empty": empty, "history": after, "rows": history.growth_rows(empty, after)}
            if "orderflow" in config.phases:
                growth["retention"] = history.retention_beside_saga(config, target, after)
        notes = target.notes
    document = report(config, results, started, notes, counted)
    if growth is not None:
        document["growth"] = growth
    config.json_out.parent.mkdir(parents=True, exist_ok=True)
    config.json_out.write_text(json.dumps(document, indent=2) + "\n")
    render(document)
    return document


def phases(config: BenchConfig, target: Target) -> dict[str, list[dict[str, Any]]]:
    """Every chosen phase, `config.repeat` times (the chains alternating which goes first); runs by phase."""
    from scripts.bench.intake_phase import intake_run
    from scripts.bench.saga_phase import saga_run

    results: dict[str, list[dict[str, Any]]] = {phase: [] for phase in config.phases}
    for repetition in range(config.repeat):
        chains = [p for p in ("baseline", "orderflow") if p in config.phases]
        for phase in chains if repetition % 2 == 0 else chains[::-1]:
            results[phase].append(saga_run(phase, config, target, repetition))
    for repetition in range(config.repeat if "intake" in config.phases else 0):
        results["intake"].append(intake_run(config, target, repetition))
    return results


def command(
    orders: int = typer.Option(2000, help="Measured orders per chain and repetition."),
    processes: int = typer.Option(2, help="Worker processes (both chains)."),
    threads: int = typer.Option(8, help="Threads per worker process (both chains)."),
    repeat: int = typer.Option(3, help="Repetitions; the tables show the median and min-max."),
    warmup: int = typer.Option(200, help="Orders through the same processes before each measurement."),
    products: int = typer.Option(100, help="Orders go round-robin over this many products (1: one hot row)."),
    intake_seconds: float = typer.Option(10.0, help="Length of each intake phase (closed loop, open loop)."),
    intake_concurrency: int = typer.Option(16, help="Concurrent keep-alive clients of the closed loop."),
    intake_rate: float = typer.Option(200.0, help="Arrival rate of the open loop, orders/s."),
    api_processes: int = typer.Option(1, min=1, help="API processes serving the intake phase (python -m api.serve)."),
    history: int = typer.Option(0, min=0, help="Then load this many terminal orders and measure again (growth)."),
    database_url: str = typer.Option(None, help="Postgres server for the throwaway database (default: local stack)."),
    redis_url: str = typer.Option(None, help="An empty Redis database to use and flush (default: a private server)."),
    json_out: str = typer.Option(None, help="Where to write the JSON results (default: STACK_DIR/bench.json)."),
    phases: str = typer.Option("baseline,orderflow,intake", help="Comma-separated subset of the phases."),
) -> None:
    """Benchmark the saga against the bare-chain baseline, and the intake API, in one run."""
    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = set(chosen) - set(BenchConfig.phases)
    if unknown:
        raise typer.BadParameter(f"unknown phases {sorted(unknown)}")
    config = BenchConfig(
        orders,
        processes,
        threads,
        repeat,
        warmup,
        products,
        intake_seconds,
        intake_concurrency,
        intake_rate,
        api_processes,
        history,
        database_url,
        redis_url,
        Path(json_out) if json_out else in_stack_dir("bench.json"),
        phases=chosen,
    )
    run(config)


if __name__ == "__main__":
    typer.run(command)

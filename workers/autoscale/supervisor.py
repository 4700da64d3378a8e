"""The worker supervisor: runs `dramatiq workers.saga.worker` processes between --min and --max by queue backlog.

`python -m workers.autoscale` is the Procfile's worker line (the saga's queues, by default) and its webhooks
line (`--queue webhooks`). Every interval it restarts workers that died, reads its queues' backlog, lets the
policy (workers/autoscale/policy.py) decide, and starts or stops workers to match; it serves every worker's
metrics and its own on one port (workers/autoscale/metrics.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import redis
import structlog
import typer
from typer import Option

from pipeline.config import get_settings
from pipeline.logs import configure_logging
from pipeline.saga import SAGA_QUEUES
from workers.autoscale import metrics
from workers.autoscale.policy import Decision, Policy, Sample, Scaler
from workers.autoscale.pool import WorkerPool
from workers.backlog import backlog
from workers.operator.dead_letters import QUEUES

log = structlog.get_logger("orderflow.autoscaler")


@dataclass(frozen=True)
class Options:
    """How to run the workers and where their metrics go."""

    threads: int
    interval_s: float
    grace_s: float
    metrics_dir: Path
    metrics_host: str
    metrics_port: int
    redis_url: str
    queues: tuple[str, ...]  # the workers consume these, and scale by their backlog alone


def run(policy: Policy, options: Options, stop: threading.Event) -> None:
    """Supervise the workers until `stop` is set, then stop them all gracefully."""
    options.metrics_dir.mkdir(parents=True, exist_ok=True)
    metrics.forget_dead_processes(options.metrics_dir)  # left behind by an earlier run
    server = metrics.serve(options.metrics_host, options.metrics_port, options.metrics_dir)
    client = redis.Redis.from_url(options.redis_url)
    pool = WorkerPool(options.threads, options.metrics_dir, options.grace_s, options.queues)
    scaler = Scaler(policy, policy.min_workers)
    log.info(
        "autoscale.started",
        min=policy.min_workers,
        max=policy.max_workers,
        threads=options.threads,
        queues=list(options.queues),
        metrics_port=options.metrics_port,
        policy=str(policy),
    )
    try:
        while True:
            tick(pool, client, scaler, options)
            if stop.wait(options.interval_s):
                break
    finally:
        log.info("autoscale.stopping", workers=len(pool.active))
        pool.stop_all()
        metrics.forget_dead_processes(options.metrics_dir)
        server.shutdown()
        client.close()


def tick(pool: WorkerPool, client: redis.Redis, scaler: Scaler, options: Options) -> None:
    """One round: replace dead workers, read the backlog, decide, and bring the pool to the wanted count."""
    for pid, code in pool.reap():
        metrics.DECISIONS.labels("restart").inc()
        log.warning(
            "autoscale.restart",
            action="restart",
            pid=pid,
            exit_code=code,
            workers=scaler.workers,
            reason="worker exited unexpectedly",
        )
    pool.tend()
    metrics.forget_dead_processes(options.metrics_dir)
    sample = read_sample(client, options.queues)
    if sample is not None:
        before = scaler.workers
        decision = scaler.observe(sample)
        if decision.action != "hold":
            record(decision, before, sample)
    while len(pool.active) < scaler.workers:
        pool.spawn()
    while len(pool.active) > scaler.workers:
        pool.retire()
    metrics.WORKERS.set(len(pool.active))


def read_sample(client: redis.Redis, consumed: tuple[str, ...]) -> Sample | None:
    """Read the backlog of the queues consumed, export it, and turn it into the policy's sample; None while Redis
    is away. Another autoscaler's queues are its own: neither exported twice nor counted here."""
    try:
        queues = {name: found for name, found in backlog(client).items() if name in consumed}
    except redis.RedisError as error:  # keep supervising (and restarting) workers while Redis comes back
        log.warning("autoscale.backlog_unreadable", error=str(error)[:300])
        return None
    metrics.export_backlog(queues)
    ages = [queue.oldest_age_s for queue in queues.values() if queue.oldest_age_s is not None]
    waiting = sum(queue.ready + queue.in_flight for queue in queues.values())
    return Sample(time.monotonic(), waiting, max(ages, default=None))


def record(decision: Decision, before: int, sample: Sample) -> None:
    metrics.DECISIONS.labels(decision.action).inc()
    log.info(
        f"autoscale.{decision.action}",
        action=decision.action,
        workers_from=before,
        workers_to=decision.desired,
        reason=decision.reason,
        waiting=sample.waiting,
        oldest_age_s=sample.oldest_age_s,
    )


MAX_HELP = "Most workers (unset: max(4, min))."
UP_HELP = "Messages ready or in flight per worker above which one more starts."
DOWN_HELP = "Messages per worker, counted with one worker fewer, below which one stops."
AGE_HELP = "Seconds the oldest ready message may wait before one more starts."
QUEUE_HELP = f"A queue the workers consume (repeat the option); by default the saga's: {', '.join(SAGA_QUEUES)}."


def main(
    min_workers: Annotated[int, Option("--min", envvar="AUTOSCALE_MIN", help="Fewest workers.")] = 1,
    max_workers: Annotated[int | None, Option("--max", envvar="AUTOSCALE_MAX", help=MAX_HELP)] = None,
    threads: Annotated[int, Option(envvar="WORKER_THREADS", help="Threads per worker process.")] = 8,
    queue: Annotated[list[str] | None, Option(help=QUEUE_HELP)] = None,
    interval_s: Annotated[float, Option("--interval", envvar="AUTOSCALE_INTERVAL_S")] = 1.0,
    cooldown_s: Annotated[float, Option("--cooldown", envvar="AUTOSCALE_COOLDOWN_S")] = 30.0,
    up_backlog: Annotated[float, Option(envvar="AUTOSCALE_UP_BACKLOG", help=UP_HELP)] = 16.0,
    down_backlog: Annotated[float, Option(envvar="AUTOSCALE_DOWN_BACKLOG", help=DOWN_HELP)] = 4.0,
    up_age_s: Annotated[float, Option("--up-age", envvar="AUTOSCALE_UP_AGE_S", help=AGE_HELP)] = 10.0,
    sustain_up_s: Annotated[float, Option("--sustain-up", envvar="AUTOSCALE_SUSTAIN_UP_S")] = 5.0,
    sustain_down_s: Annotated[float, Option("--sustain-down", envvar="AUTOSCALE_SUSTAIN_DOWN_S")] = 30.0,
    grace_s: Annotated[float, Option("--grace", envvar="AUTOSCALE_GRACE_S", help="SIGTERM to SIGKILL.")] = 30.0,
    metrics_dir: Annotated[Path, Option(envvar="WORKER_METRICS_DIR")] = Path("/tmp/orderflow-worker-metrics"),
    metrics_host: Annotated[str, Option(envvar="WORKER_METRICS_HOST")] = "0.0.0.0",
    metrics_port: Annotated[int, Option(envvar="WORKER_METRICS_PORT")] = 9191,
) -> None:
    """Run worker processes between --min and --max, consuming --queue (the saga's), scaled by their backlog."""
    queues = tuple(queue or SAGA_QUEUES)
    if unknown := sorted(set(queues) - set(QUEUES)):
        raise typer.BadParameter(f"no such queue: {', '.join(unknown)} (the queues: {', '.join(QUEUES)})")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise typer.BadParameter(
            "run the autoscaler without PROMETHEUS_MULTIPROC_DIR/dramatiq_prom_db; "
            "give the workers' folder as --metrics-dir"
        )
    try:
        policy = Policy(
            min_workers,
            max_workers or max(4, min_workers),
            up_backlog,
            down_backlog,
            up_age_s,
            sustain_up_s,
            sustain_down_s,
            cooldown_s,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    settings = get_settings()
    if settings.redis_url is None:
        raise typer.BadParameter("REDIS_URL is not set: start the stack through `orderctl demo`, or set REDIS_URL")
    configure_logging(settings.log_level, settings.log_format)
    options = Options(threads, interval_s, grace_s, metrics_dir, metrics_host, metrics_port, settings.redis_url, queues)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(policy, options, stop)

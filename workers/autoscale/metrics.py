"""The autoscaler's metrics, and the one endpoint that serves them with every worker process's metrics.

Workers write Dramatiq's and the saga's metrics into a shared multiprocess folder and serve nothing
themselves (workers/broker.py); the autoscaler reads that folder on every scrape. Its own metrics
live in this process's memory, in a registry of their own: the autoscaler must not run with
PROMETHEUS_MULTIPROC_DIR set, or they would also land in the folder and be exported twice.
"""

from __future__ import annotations

import re
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from workers.backlog import QueueBacklog

REGISTRY = CollectorRegistry()
QUEUE_MESSAGES = Gauge(
    "orderflow_queue_messages", "Messages in a saga queue by state.", ["queue", "state"], registry=REGISTRY
)
OLDEST_AGE = Gauge(
    "orderflow_queue_oldest_age_seconds",
    "How long the oldest ready message of a queue has waited (0 when none is ready).",
    ["queue"],
    registry=REGISTRY,
)
WORKERS = Gauge("orderflow_workers", "Worker processes running (not counting ones shutting down).", registry=REGISTRY)
DECISIONS = Counter(
    "orderflow_autoscaler_decisions_total", "Autoscaler decisions by action.", ["action"], registry=REGISTRY
)
for _action in ("up", "down", "restart"):
    DECISIONS.labels(_action)  # exported as 0 from the start, so rate() sees the first one

# prometheus_client names a process's files `<kind>_<mode>_<pid>.db`; live gauges are the ones to drop.
LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def serve(host: str, port: int, metrics_dir: Path) -> WSGIServer:
    """Serve the workers' multiprocess metrics and the autoscaler's own on one port, from a daemon thread.

    Call once per process: the folder's collector joins the autoscaler's registry.
    """
    MultiProcessCollector(REGISTRY, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    server, _ = start_http_server(port, host, registry=REGISTRY)
    return server


def export_backlog(queues: dict[str, QueueBacklog]) -> None:
    """Set the queue gauges from one backlog reading."""
    for name, queue in queues.items():
        for state in ("ready", "delayed", "in_flight", "dead"):
            QUEUE_MESSAGES.labels(name, state).set(getattr(queue, state))
        OLDEST_AGE.labels(name).set(queue.oldest_age_s or 0)


def forget_dead_processes(metrics_dir: Path) -> list[int]:
    """Mark every process that left live gauges behind and is gone (or a zombie) as dead; returns their pids.

    A worker killed with SIGKILL never runs Dramatiq's own clean-up, and its in-progress gauges
    would otherwise be summed into the totals forever.
    """
    pids = {int(match[1]) for path in metrics_dir.iterdir() if (match := LIVE_GAUGE_FILE.match(path.name))}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]
    return dead


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False

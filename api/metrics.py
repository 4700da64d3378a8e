"""The API's Prometheus metrics, one registry per app so tests can build many apps in one process.

They are served on their own port (API_METRICS_PORT on METRICS_HOST, loopback by default), where only
Prometheus reaches them, not on the public API port. With PROMETHEUS_MULTIPROC_DIR set (several uvicorn
workers), values go to files in that folder and the one process that binds the port serves them all through a
MultiProcessCollector.
"""

from __future__ import annotations

import errno
import os
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import start_http_server as start_metrics_server
from prometheus_client.multiprocess import MultiProcessCollector

from api.auth import FAILURE_REASONS
from pipeline.logs import get_logger

log = get_logger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Requests by route template, method and status; request latency; orders accepted; refused authentications."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "orderflow_http_requests_total",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "orderflow_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.orders_accepted = Counter(
            "orderflow_orders_accepted_total",
            "Orders written as pending (replays not counted).",
            registry=self.registry,
        )
        self.intake_not_ready = Counter(
            "orderflow_intake_not_ready_total",
            "POST /v1/orders answered 503 NOT_READY: Postgres did not answer within INTAKE_DB_BUDGET_S.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "orderflow_auth_failures_total",
            "Requests refused 401, by why the token was refused.",
            ["reason"],
            registry=self.registry,
        )
        for reason in FAILURE_REASONS:  # every series exists from the start, so rate() sees the first failure
            self.auth_failures.labels(reason)
        self.auth_throttled = Counter(
            "orderflow_auth_throttled_total",
            "Requests refused 429 before their token was read: their address failed authentication too often.",
            registry=self.registry,
        )

        self.console_sign_ins = Counter(
            "orderflow_console_sign_ins_total",
            "Console sign-ins, by outcome: signed_in, or refused (a bad token, or one without admin/console:read).",
            ["outcome"],
            registry=self.registry,
        )
        self.console_actions = Counter(
            "orderflow_console_actions_total",
            "Operator actions confirmed in the console, per order or dead letter: done, or refused by the saga.",
            ["action", "outcome"],
            registry=self.registry,
        )
        for outcome in ("signed_in", "refused"):
            self.console_sign_ins.labels(outcome)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus reads, and its content type."""
        return generate_latest(self.served_registry()), CONTENT_TYPE_LATEST

    def served_registry(self) -> CollectorRegistry:
        """This app's registry, or with several API processes one that reads all of their files."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def serve(self, host: str, port: int) -> WSGIServer | None:
        """Serve /metrics on host:port from a daemon thread; None when off (port 0) or a sibling process serves."""
        if not port:
            return None
        try:
            server, _ = start_metrics_server(port, host, registry=self.served_registry())
        except OSError as error:
            if error.errno == errno.EADDRINUSE and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                log.info("api_metrics_served_by_sibling", host=host, port=port)  # it reads this process's files too
                return None
            raise
        log.info("api_metrics_serving", host=host, port=port)
        return server

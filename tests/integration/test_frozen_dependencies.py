"""Intake answers in bounded time while Postgres or Redis hangs (SIGSTOPped, not dead), and no order is lost.

A frozen server is worse than a dead one: the kernel still accepts its connections and acknowledges what is
sent, so nothing fails, it just never answers. The servers here are private to this module (a Postgres cluster
and a redis-server under a temporary folder, on free ports), so freezing them disturbs no other test run, and
the processes on them are the real ones, as the Procfile runs them: the API under uvicorn over HTTP, a Dramatiq
worker and the reaper, each a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from api.auth import mint_token
from models import migrate
from models.db import engine_for
from scripts.devstack import localstack
from scripts.devstack.processes import Child, python, venv_tool, wait_until_answers
from tests.factories import GOOD_ADDRESS, make_product, random_user
from tests.saga_helpers import wait_until_terminal

log = logging.getLogger(__name__)

FREEZE_S = 6.0
POSTGRES_BOUND_S = 5.0
REDIS_BOUND_S = 2.0
READY_BOUND_S = 5.0  # the readiness probe's timeout (deploy/k8s/api.yaml)
# Short leases and sweeps, so an order whose first message was lost with the freeze is re-driven in seconds.
CHILD_SETTINGS = {"STEP_LEASE_S": "2", "REAPER_INTERVAL_S": "0.5", "REAPER_METRICS_PORT": "0", "LOG_FORMAT": "json"}


@dataclass(frozen=True)
class Answer:
    """What POST /v1/orders answered for one Idempotency-Key, and how long it took."""

    key: str
    request: dict[str, Any]
    status: int
    seconds: float
    body: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.status in (200, 201)

    @property
    def bounded_503(self) -> bool:
        return self.status == 503 and self.body.get("code") == "NOT_READY"


@dataclass
class Stack:
    """The private servers, the processes on them, and a client of the API."""

    root: Path
    servers: localstack.Stack
    api_url: str
    metrics_url: str
    token: str
    product: uuid.UUID
    children: dict[str, Child] = field(default_factory=dict)

    def place(self, key: str, body: dict[str, Any] | None = None) -> Answer:
        body = body or {
            "userId": random_user(),
            "items": [{"productId": str(self.product), "quantity": 1, "price": 1250}],
            "shippingAddress": GOOD_ADDRESS,
            "paymentMethodId": "pm_card_visa",
        }
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
        started = time.monotonic()
        response = httpx.post(f"{self.api_url}/v1/orders", json=body, headers=headers, timeout=60)
        return Answer(key, body, response.status_code, time.monotonic() - started, response.json())

    def get(self, path: str) -> tuple[float, int, dict[str, Any]]:
        """How long a GET took, its status and its body."""
        started = time.monotonic()
        response = httpx.get(f"{self.api_url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        return time.monotonic() - started, response.status_code, response.json()

    def postgres_processes(self) -> list[psutil.Process]:
        """The postmaster and every process it started (backends, checkpointer, walwriter, ...)."""
        postmaster = psutil.Process(int((self.root / "postgres" / "data" / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]

    def redis_processes(self) -> list[psutil.Process]:
        return [psutil.Process(int((self.root / "redis" / "redis.pid").read_text().split()[0]))]

    def log_of(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Not under pytest's folder: other runs on this machine reset its permissions, which Postgres's user needs.
    root = Path(tempfile.mkdtemp(prefix="orderflow-frozen-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        cleanup.callback(localstack.stop, root)
        servers = localstack.ensure_up(root, database="frozen")
        cleanup.callback(lambda: engine_for(servers.database_url).dispose())
        migrate.upgrade(servers.database_url)
        secret = secrets.token_urlsafe(32)
        port, metrics_port = localstack.free_port(), localstack.free_port()
        token = mint_token(secret, "frozen-shop", ["orders:write", "orders:read"])
        product = make_product(servers.database_url, stock=10_000)
        urls = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
        stack = Stack(root, servers, *urls, token, product)
        (root / "logs").mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
        env |= CHILD_SETTINGS | {
            "DATABASE_URL": servers.database_url,
            "REDIS_URL": servers.redis_url,
            "STACK_DIR": str(root),
            "JWT_SECRETS": json.dumps([secret]),
            "API_METRICS_PORT": str(metrics_port),
        }
        commands = {
            "api": venv_tool("uvicorn", "api.app:create_app", "--factory", "--port", str(port), "--log-level", "error"),
            "worker": venv_tool("dramatiq", "workers.saga.worker", "--processes", "1", "--threads", "4"),
            "reaper": python("-m", "workers.reaper"),
        }
        for name, argv in commands.items():
            stack.children[name] = Child(name, argv, env, root / "logs").start()
            cleanup.callback(stack.children[name].stop)
        wait_until_answers(f"{stack.api_url}/readyz", stack.children["api"].process, 60, "the API did not start")
        yield stack


@contextmanager
def frozen(processes: Callable[[], list[psutil.Process]]) -> Iterator[None]:
    """SIGSTOP every process of a server (twice over, for one forked meanwhile); SIGCONT them all, whatever happens."""
    stopped: dict[int, psutil.Process] = {}
    try:
        for _ in range(2):
            for process in processes():
                if process.pid not in stopped:
                    process.send_signal(signal.SIGSTOP)
                    stopped[process.pid] = process
        # A signal is delivered asynchronously: the freeze starts once the kernel says every process is stopped.
        for attempt in Retrying(stop=stop_after_delay(5), wait=wait_fixed(0.01), reraise=True):
            with attempt:
                assert all(process.status() == psutil.STATUS_STOPPED for process in stopped.values())
        yield
    finally:
        for process in stopped.values():
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


def place_while_frozen(
    stack: Stack, processes: Callable[[], list[psutil.Process]], orders: int
) -> tuple[list[Answer], tuple[float, int, dict[str, Any]], tuple[float, int, dict[str, Any]]]:
    """Freeze the server for FREEZE_S; meanwhile place `orders` orders half a second apart, ask /readyz and list."""
    with ThreadPoolExecutor(max_workers=orders + 2) as pool, frozen(processes):
        started = time.monotonic()
        placing: list[Future[Answer]] = []
        for _ in range(orders):
            placing.append(pool.submit(stack.place, f"frozen-{uuid.uuid4().hex}"))
            time.sleep(0.5)
        readiness, listing = pool.submit(stack.get, "/readyz"), pool.submit(stack.get, "/v1/orders")
        pending: list[Future[Any]] = [*placing, readiness, listing]
        wait(pending, timeout=FREEZE_S - (time.monotonic() - started))
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - started)))
    # Thawed: requests that were still waiting (with no bound) answer now, and show how long they took.
    return [future.result() for future in placing], readiness.result(), listing.result()


def accepted_after_thaw(stack: Stack, answers: list[Answer]) -> list[uuid.UUID]:
    """Each order's id, once its key is accepted: a 503 is retried with the same key, as a client would."""
    order_ids = []
    for answer in answers:
        for attempt in Retrying(
            stop=stop_after_delay(20), wait=wait_fixed(0.2), reraise=True, retry=retry_if_exception_type(AssertionError)
        ):
            with attempt:
                settled = answer if answer.accepted else stack.place(answer.key, answer.request)
                assert settled.accepted, settled
        order_ids.append(uuid.UUID(settled.body["id"]))
    return order_ids


def assert_all_shipped(stack: Stack, order_ids: list[uuid.UUID]) -> None:
    orders = wait_until_terminal(stack.servers.database_url, order_ids, seconds=45)
    assert {order_id: orders[order_id].status for order_id in order_ids} == dict.fromkeys(order_ids, "shipped")


def metric(stack: Stack, name: str) -> float:
    line = next(line for line in httpx.get(stack.metrics_url, timeout=5).text.splitlines() if line.startswith(name))
    return float(line.split()[-1])


def test_with_postgres_frozen_intake_answers_503_not_ready_within_5_s_and_every_order_ships(stack: Stack) -> None:
    before = [stack.place(f"before-{uuid.uuid4().hex}") for _ in range(2)]
    not_ready_before = metric(stack, "orderflow_intake_not_ready_total")

    during, (ready_s, ready_status, readiness), listing = place_while_frozen(stack, stack.postgres_processes, orders=4)
    after = [stack.place(f"after-{uuid.uuid4().hex}") for _ in range(2)]

    log.info(
        "frozen postgres: POST answers %s, /readyz %.2f s", [(a.status, round(a.seconds, 2)) for a in during], ready_s
    )
    assert all(answer.status == 201 for answer in before + after), before + after
    assert all(a.seconds < POSTGRES_BOUND_S and (a.status == 201 or a.bounded_503) for a in during), during
    assert any(answer.bounded_503 for answer in during), "Postgres was frozen: some order must have waited on it"
    assert ready_s < READY_BOUND_S and ready_status == 503 and readiness["details"]["postgres"].startswith("unreach")
    assert listing[0] < POSTGRES_BOUND_S and listing[1:] == (503, listing[2]) and listing[2]["code"] == "NOT_READY"
    unanswered = sum(answer.bounded_503 for answer in during)
    assert metric(stack, "orderflow_intake_not_ready_total") - not_ready_before == unanswered
    assert_all_shipped(stack, accepted_after_thaw(stack, before + during + after))


def test_with_redis_frozen_intake_answers_within_2_s_and_every_order_ships(stack: Stack) -> None:
    before = [stack.place(f"before-{uuid.uuid4().hex}") for _ in range(2)]

    during, (ready_s, ready_status, readiness), listing = place_while_frozen(stack, stack.redis_processes, orders=4)
    after = [stack.place(f"after-{uuid.uuid4().hex}") for _ in range(2)]

    log.info(
        "frozen redis: POST answers %s, /readyz %.2f s", [(a.status, round(a.seconds, 2)) for a in during], ready_s
    )
    assert all(answer.status == 201 for answer in before + after), before + after
    # Postgres answers, so every order is written; its first message is lost with the freeze, and the reaper
    # re-drives it once its lease runs out.
    assert all(a.seconds < REDIS_BOUND_S and a.status == 201 for a in during), during
    # Readiness needs only Postgres: the pod stays in service and reports Redis as unreachable.
    assert ready_s < READY_BOUND_S and ready_status == 200 and readiness["checks"]["redis"].startswith("unreach")
    assert listing[0] < REDIS_BOUND_S and listing[1] == 200, listing  # the limiter lets it through
    assert_all_shipped(stack, accepted_after_thaw(stack, before + during + after))
    # The worker took the hung Redis for a lost connection (and reconnected), not for a bug in Dramatiq.
    assert "Consumer encountered an unexpected error" not in stack.log_of("worker")

"""The chaos harness: the whole stack under real faults, then an audit of every order and every cent.

It starts its own Postgres and Redis (under a fresh folder, so nothing else is disturbed), the
loopback Stripe, the API, the reaper and N worker processes; pushes M orders through the API
while SIGKILLing random workers every few seconds, restarting Redis once with its data and once
without, and crashing Postgres once; then waits for every order to settle and audits: every
order terminal and none lost, at most one successful charge per order and the money back for
every cancelled one (against the Stripe server's own ledger), notifications and shipments at
most once, stock conserved and never negative.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from models.db import dispose_engines, engine_for
from models.migrate import upgrade
from pipeline.audit import audit, violations_only
from pipeline.config import LOCAL_STRIPE_KEY
from scripts import localstack
from scripts.demo import TERMINAL, demo_order, seed_catalogue
from scripts.processes import Child, python, venv_tool

console = Console()


@dataclass(frozen=True)
class Plan:
    """How hard to shake the stack."""

    orders: int = 300
    rate: float = 15.0
    workers: int = 3
    threads: int = 8
    kill_every_s: float = 3.0
    lease_s: float = 5.0
    settle_timeout_s: float = 300.0


@dataclass
class Report:
    """What happened and what the audit found."""

    accepted: list[str] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: dict[str, list[str]] = field(default_factory=dict)
    push_s: float = 0.0
    quiescence_s: float | None = None

    @property
    def clean(self) -> bool:
        return self.quiescence_s is not None and not violations_only(self.violations)


class Stack:
    """The processes of one chaos run, each in its own process group."""

    def __init__(self, root: Path, servers: localstack.Stack, plan: Plan) -> None:
        self.root, self.servers, self.plan = root, servers, plan
        self.api_url = f"http://127.0.0.1:{localstack.free_port()}"
        self.stripe_url = f"http://127.0.0.1:{localstack.free_port()}"
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        env = self._env()
        api_port, stripe_port = self.api_url.rsplit(":", 1)[1], self.stripe_url.rsplit(":", 1)[1]
        self.stripe = Child("stripe", python("-m", "scripts.fake_stripe", "--port", stripe_port), env, logs)
        web = ["api.app:create_app", "--factory", "--port", api_port, "--log-level", "warning"]
        self.api = Child("api", venv_tool("uvicorn", *web), env, logs)
        self.reaper = Child("reaper", python("-m", "workers.recovery"), env, logs)
        dramatiq = venv_tool("dramatiq", "workers", "--processes", "1", "--threads", str(plan.threads))
        self.workers = [Child(f"worker-{n}", dramatiq, env, logs) for n in range(plan.workers)]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
        return env | {
            "DATABASE_URL": self.servers.database_url, "REDIS_URL": self.servers.redis_url,
            "STACK_DIR": str(self.root), "STRIPE_API_BASE": self.stripe_url, "STRIPE_API_KEY": LOCAL_STRIPE_KEY,
            "STRIPE_TIMEOUT_S": "2", "STEP_LEASE_S": str(self.plan.lease_s), "REAPER_INTERVAL_S": "1",
            "REAPER_METRICS_PORT": str(localstack.free_port()), "RATE_LIMIT_PER_S": "100000",
            "RATE_LIMIT_BURST": "100000", "LOG_FORMAT": "json",
            # A flaky provider on top of the crashes: errors, rate limits, and answers lost in a timeout.
            "FAKE_STRIPE_ERROR_RATE": "0.02", "FAKE_STRIPE_RATE_LIMIT_RATE": "0.01",
            "FAKE_STRIPE_TIMEOUT_RATE": "0.01", "FAKE_STRIPE_TIMEOUT_DELAY_S": "3",
        }  # fmt: skip

    def start(self) -> None:
        for child in (self.stripe, self.api, self.reaper, *self.workers):
            child.start()
        _wait_until(lambda: _answers(f"{self.api_url}/readyz"), "the API did not become ready", 60)
        _wait_until(lambda: _answers(f"{self.stripe_url}/_control/faults"), "the Stripe server did not start", 30)

    def stop(self) -> None:
        for child in (*self.workers, self.reaper, self.api, self.stripe):
            child.stop()


def run(plan: Plan, root: Path | None = None) -> Report:
    """Run the whole experiment; the servers and their data are removed afterwards unless root was given."""
    keep = root is not None
    root = (root or Path(tempfile.mkdtemp(prefix="orderflow-chaos-"))).resolve()
    servers = localstack.ensure_up(root, database="chaos")
    upgrade(servers.database_url)
    stack = Stack(root, servers, plan)
    report = Report()
    try:
        stack.start()
        _experiment(stack, plan, report)
    finally:
        stack.stop()
        dispose_engines()
        localstack.stop(root)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


def _experiment(stack: Stack, plan: Plan, report: Report) -> None:
    from api.auth import local_secret, mint_token

    catalogue = seed_catalogue(stack.servers.database_url)
    token = mint_token(local_secret(stack.root), "chaos-shop", ["orders:write", "orders:read"])
    started = time.monotonic()
    done = threading.Event()
    chaos = threading.Thread(target=_shake, args=(stack, plan, report, started, done), daemon=True)
    chaos.start()
    try:
        report.accepted = place_orders(stack.api_url, token, catalogue, plan.orders, plan.rate)
    finally:
        done.set()
        chaos.join()
    report.push_s = time.monotonic() - started
    report.quiescence_s = _settle(stack.servers.database_url, report.accepted, plan.settle_timeout_s)
    report.outcomes = _outcomes(stack.servers.database_url)
    ledger = httpx.get(f"{stack.stripe_url}/_control/ledger", timeout=30).json()
    report.violations = audit(stack.servers.database_url, ledger) | _lost(stack.servers.database_url, report.accepted)


def _shake(stack: Stack, plan: Plan, report: Report, started: float, done: threading.Event) -> None:
    """Kill a random worker every few seconds; restart each server once, spread over the push."""
    push_s = plan.orders / plan.rate
    restarts: list[tuple[float, str, Callable[[], None]]] = [
        (0.25 * push_s, "redis restarted, data kept", lambda: localstack.restart_redis(stack.root, keep_data=True)),
        (0.5 * push_s, "redis restarted, data lost", lambda: localstack.restart_redis(stack.root, keep_data=False)),
        (0.75 * push_s, "postgres crashed and restarted", lambda: localstack.restart_postgres(stack.root)),
    ]
    next_kill = plan.kill_every_s
    while not done.wait(0.2):
        elapsed = time.monotonic() - started
        if restarts and elapsed >= restarts[0][0]:
            _, what, restart = restarts.pop(0)
            try:
                restart()
            except Exception as error:  # reported, and the audit still runs
                what = f"FAILED: {what}: {error}"
            report.events.append((elapsed, what))
        if elapsed >= next_kill:
            victim = random.choice(stack.workers)
            victim.kill()
            report.events.append((elapsed, f"SIGKILL {victim.name}"))
            next_kill = elapsed + plan.kill_every_s * random.uniform(0.7, 1.3)
            time.sleep(random.uniform(0.3, 1.0))  # the time a supervisor takes to notice and restart it
            victim.start()
    for child in stack.workers:  # a worker may have died on its own during a restart: bring it back
        if not child.alive:
            child.start()


def place_orders(api: str, token: str, catalogue: list[dict[str, Any]], count: int, rate: float) -> list[str]:
    """POST `count` orders at about `rate` per second; each is retried with its idempotency key until accepted."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client, ThreadPoolExecutor(8) as pool:

        def place(index: int) -> str:
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            body, key = demo_order(index, catalogue), str(uuid.uuid4())
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
                    if response.status_code in (200, 201):
                        return str(response.json()["id"])
                    if response.status_code < 500 and response.status_code != 429:
                        raise RuntimeError(f"order {index} refused: {response.status_code} {response.text[:300]}")
                except httpx.TransportError:
                    pass  # the API or its database is restarting: a client retries with the same key
                if time.monotonic() > deadline:
                    raise RuntimeError(f"order {index} was not accepted within 120 s")
                time.sleep(0.5)

        started = time.monotonic()
        return list(pool.map(place, range(count)))


def _settle(database_url: str, order_ids: list[str], timeout_s: float) -> float | None:
    """Seconds until every order is terminal, or None if that did not happen within timeout_s."""
    started = time.monotonic()
    query = text("SELECT count(*) FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(:terminal)")
    while time.monotonic() - started < timeout_s:
        try:
            with engine_for(database_url).connect() as connection:
                settled = connection.execute(query, {"ids": order_ids, "terminal": list(TERMINAL)}).scalar_one()
            if settled == len(order_ids):
                return time.monotonic() - started
        except Exception as error:  # Postgres still recovering from its crash
            console.print(f"[yellow]waiting for Postgres: {str(error).splitlines()[0]}[/yellow]")
        time.sleep(0.5)
    return None


def _outcomes(database_url: str) -> Counter[tuple[str, str]]:
    query = text("SELECT status, coalesce(cancel_reason, ''), count(*) FROM orders GROUP BY 1, 2")
    with engine_for(database_url).connect() as connection:
        return Counter({(status, reason): number for status, reason, number in connection.execute(query)})


def _lost(database_url: str, accepted: list[str]) -> dict[str, list[str]]:
    with engine_for(database_url).connect() as connection:
        stored = {str(row[0]) for row in connection.execute(text("SELECT id FROM orders"))}
    return lost_orders(stored, accepted)


def lost_orders(stored: set[str], accepted: list[str]) -> dict[str, list[str]]:
    """Accepted orders missing from the database, and orders nobody was told about (a duplicate of a retry)."""
    return {"accepted order lost": sorted(set(accepted) - stored), "order not accepted": sorted(stored - set(accepted))}


def show(report: Report) -> None:
    """Print the events, the outcomes and the audit as tables."""
    events = Table("at s", "event", title="chaos")
    for at, what in report.events:
        events.add_row(f"{at:.1f}", what)
    console.print(events)
    outcomes = Table("status", "reason", "orders", title=f"{len(report.accepted)} orders accepted")
    for (status, reason), number in sorted(report.outcomes.items(), key=lambda item: -item[1]):
        outcomes.add_row(status, reason, str(number))
    outcomes.add_section()
    outcomes.add_row("push", "seconds", f"{report.push_s:.1f}")
    settled = "never" if report.quiescence_s is None else f"{report.quiescence_s:.1f}"
    outcomes.add_row("quiescence", "seconds after the last order", settled)
    console.print(outcomes)
    checks = Table("check", "violations", title="audit")
    for name, ids in report.violations.items():
        checks.add_row(name, f"[red]{len(ids)}: {', '.join(ids[:3])}[/red]" if ids else "[green]0[/green]")
    console.print(checks)
    console.print("[green]clean[/green]" if report.clean else "[red]VIOLATIONS or orders not settled[/red]")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until(ready: Callable[[], bool], failure: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.3)


def command(
    orders: Annotated[int, typer.Option(min=1, help="Orders to push through the API.")] = 300,
    rate: Annotated[float, typer.Option(min=1, help="Orders per second.")] = 15,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one Dramatiq process each).")] = 3,
    threads: Annotated[int, typer.Option(min=1, help="Threads per worker process.")] = 8,
    kill_every: Annotated[float, typer.Option(min=0.5, help="Seconds between worker SIGKILLs (jittered).")] = 3,
    lease: Annotated[float, typer.Option(min=1, help="STEP_LEASE_S for this run.")] = 5,
    settle_timeout: Annotated[float, typer.Option(min=10, help="Seconds to wait for every order to settle.")] = 300,
    root: Annotated[Path | None, typer.Option(help="Keep data and logs here (default: a temp dir).")] = None,
) -> None:
    """Shake the whole stack (worker kills, Redis and Postgres restarts) and audit the result; exit 1 if not clean."""
    plan = Plan(orders, rate, workers, threads, kill_every, lease, settle_timeout)
    console.print(f"chaos: {plan}")
    report = run(plan, root)
    show(report)
    if not report.clean:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(command)

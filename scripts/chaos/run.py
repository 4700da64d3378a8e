"""The chaos harness: the whole stack under real faults, then an audit of every order and every cent.

It starts its own Postgres and Redis (under a fresh folder, so nothing else is disturbed), the
loopback Stripe, the API, the reaper, N saga worker processes and one webhook worker, and a shop's
webhook endpoint; pushes M orders through the API while SIGKILLing random workers every few seconds,
restarting Redis once with its data and once without, and crashing Postgres once; then waits for
every order to settle and audits: every order terminal and none lost, at most one successful charge
per order and the money back for every cancelled one (against the Stripe server's own ledger),
notifications and shipments at most once, stock conserved and never negative, and every terminal
order's final event delivered to the shop, one event id per sequence number.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
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
from models.status import TERMINAL_VALUES
from pipeline.audit import INFO, audit, violations_only
from scripts.chaos.stack import ChaosStack
from scripts.devstack import localstack
from scripts.devstack.demo import watch
from scripts.devstack.demo_orders import place_orders, seed_catalogue
from scripts.devstack.processes import sigterm_unwinds
from scripts.devstack.shop_endpoint import ShopEndpoint, audit_deliveries, final_events, summary, wait_for_finals

console = Console()
CLIENT = "chaos-shop"  # the one shop placing the orders, with a webhook endpoint
SHOP_FAILURE_RATE = 0.05  # its endpoint answers a 500 now and then: the retries have to make up for it


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
    meddle_every_s: float = 2.0


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


def run(plan: Plan, root: Path | None = None) -> Report:
    """Run the whole experiment; the servers and their data are removed afterwards unless root was given."""
    keep = root is not None
    root = (root or Path(tempfile.mkdtemp(prefix="orderflow-chaos-"))).resolve()
    servers = localstack.ensure_up(root, database="chaos")
    upgrade(servers.database_url)
    stack = ChaosStack(root, servers, plan.lease_s, plan.workers, plan.threads)
    report = Report()
    try:
        with sigterm_unwinds():  # a SIGTERM (a timeout around the run) still stops the stack below
            stack.start()
            _experiment(stack, plan, report)
    finally:
        stack.stop()
        dispose_engines()
        localstack.stop(root)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


def _experiment(stack: ChaosStack, plan: Plan, report: Report) -> None:
    from api.auth import local_secret, mint_token

    catalogue = seed_catalogue(stack.servers.database_url)
    token = mint_token(local_secret(stack.root), CLIENT, ["orders:write", "orders:read"])
    with ShopEndpoint(SHOP_FAILURE_RATE) as shop, shop.registered(stack.api_url, token):
        _push_and_settle(stack, plan, report, catalogue, token)
        finals = final_events(stack.servers.database_url, report.accepted)
        wait_for_finals(shop, finals, plan.settle_timeout_s)
        report.violations |= audit_deliveries(shop, finals)
        report.events.append((0.0, summary(shop)))


def _push_and_settle(
    stack: ChaosStack, plan: Plan, report: Report, catalogue: list[dict[str, Any]], token: str
) -> None:
    """Place the orders while shaking the stack, wait for them and for Stripe's events, then audit the money."""
    started = time.monotonic()
    done = threading.Event()
    chaos = threading.Thread(target=_shake, args=(stack, plan, report, started, done), daemon=True)
    dashboard = threading.Thread(target=_meddle, args=(stack, plan, report, started, done), daemon=True)
    chaos.start()
    dashboard.start()
    try:
        report.accepted = place_orders(stack.api_url, token, catalogue, plan.orders, plan.rate)
    finally:
        done.set()
        chaos.join()
        dashboard.join()
    report.push_s = time.monotonic() - started
    settling = time.monotonic()
    statuses = watch(stack.servers.database_url, report.accepted, plan.settle_timeout_s)
    if sum(statuses[status] for status in TERMINAL_VALUES) == len(report.accepted):
        report.quiescence_s = time.monotonic() - settling
    _wait_for_webhooks(stack.stripe_url, plan.settle_timeout_s)
    watch(stack.servers.database_url, report.accepted, plan.settle_timeout_s)  # a late event may reopen an order
    report.outcomes = _outcomes(stack.servers.database_url)
    ledger = httpx.get(f"{stack.stripe_url}/_control/ledger", timeout=30).json()
    shipments = httpx.get(f"{stack.carrier_url}/_control/ledger", timeout=30).json()
    found = audit(stack.servers.database_url, ledger, shipments)
    report.violations = found | _lost(stack.servers.database_url, report.accepted)


def _shake(stack: ChaosStack, plan: Plan, report: Report, started: float, done: threading.Event) -> None:
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


def _meddle(stack: ChaosStack, plan: Plan, report: Report, started: float, done: threading.Event) -> None:
    """Act as the shop owner in the Stripe dashboard: refund some charges (in full or in part), dispute others."""
    rng = random.Random(7)
    client = httpx.Client(base_url=stack.stripe_url, timeout=10)
    while not done.wait(plan.meddle_every_s):
        try:
            charged = [i for i in client.get("/_control/ledger").json() if i["status"] == "succeeded"]
            if not charged:
                continue
            # The newest charges: most of their orders have not shipped yet, where a refund or dispute bites.
            intent = rng.choice(sorted(charged, key=lambda i: i["created"])[-5:])
            action = rng.choice(("full refund", "partial refund", "dispute"))
            if action == "dispute":
                answer = client.post("/_control/disputes", json={"payment_intent": intent["id"]})
            else:
                amount = None if action == "full refund" else max(1, intent["amount"] // 3)
                answer = client.post("/_control/refunds", json={"payment_intent": intent["id"], "amount": amount})
            if answer.is_success:
                report.events.append((time.monotonic() - started, f"dashboard {action} {intent['id']}"))
        except httpx.HTTPError:
            continue
    client.close()


def _wait_for_webhooks(stripe_url: str, timeout_s: float) -> None:
    """Until Stripe has delivered (or given up on) every event: the audit compares what both sides know."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = httpx.get(f"{stripe_url}/_control/events", timeout=30).json()
        if all(e["delivery"]["delivered"] or e["delivery"]["given_up"] for e in events):
            return
        time.sleep(1)


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
        colour = "yellow" if name.startswith(INFO) else "red"
        checks.add_row(name, f"[{colour}]{len(ids)}: {', '.join(ids[:3])}[/{colour}]" if ids else "[green]0[/green]")
    console.print(checks)
    console.print("[green]clean[/green]" if report.clean else "[red]VIOLATIONS or orders not settled[/red]")


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

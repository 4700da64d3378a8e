"""The main job: the whole local stack with a stream of demo orders flowing through the saga."""

from __future__ import annotations

import time
from collections import Counter

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models.db import engine_for
from models.status import TERMINAL_VALUES
from scripts.devstack import side_servers
from scripts.devstack.demo_orders import place_orders, seed_catalogue
from scripts.devstack.localstack import Stack, free_port
from scripts.devstack.processes import sigterm_unwinds
from scripts.devstack.procfile import Ports, running_procfile, url
from scripts.devstack.shop_endpoint import ShopEndpoint, final_events, wait_for_finals

console = Console()
SHOP = "demo-shop"  # the one shop placing the demo's orders, with a webhook endpoint
SHOP_FAILURE_RATE = 0.03  # its endpoint answers a 500 now and then, as a shop's does: retries make up for it
# Faults a real shop meets: a flaky payment provider, notifier and carrier, charges that process a while.
DEMO_FAULTS = {
    "FAKE_STRIPE_ERROR_RATE": "0.04",
    "FAKE_STRIPE_RATE_LIMIT_RATE": "0.02",
    "FAKE_STRIPE_TIMEOUT_RATE": "0.01",
    "FAKE_STRIPE_TIMEOUT_DELAY_S": "3",
    "FAKE_STRIPE_SEARCH_LAG_S": "30",
    "FAKE_STRIPE_PROCESSING_RATE": "0.03",
    "FAKE_STRIPE_PROCESSING_DELAY_S": "1",
    "NOTIFY_FAULT_RATE": "0.03",
    "FAKE_CARRIER_ERROR_RATE": "0.02",
    "FAKE_CARRIER_LOST_ANSWER_RATE": "0.01",
    "FAKE_CARRIER_TIMEOUT_DELAY_S": "3",
}


def watch(database_url: str, order_ids: list[str], timeout_s: float) -> Counter[str]:
    """Show live progress by status until every order is terminal (or the timeout passes)."""
    query = text("SELECT status, count(*) FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("orders terminal", total=len(order_ids))
        statuses: Counter[str] = Counter()
        while True:
            try:
                with engine_for(database_url).connect() as connection:
                    statuses = Counter({row[0]: row[1] for row in connection.execute(query, {"ids": order_ids})})
            except OperationalError:  # Postgres restarting (the chaos harness does that): poll again
                pass
            done = sum(statuses[s] for s in TERMINAL_VALUES)
            live = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()) if s not in TERMINAL_VALUES)
            live = live or "none in flight"
            progress.update(task, completed=done, description=f"orders terminal ({live})")
            if done == len(order_ids) or time.monotonic() > deadline:
                return statuses
            time.sleep(0.5)


def summary(database_url: str, order_ids: list[str], elapsed_s: float, delivered: list[tuple[str, str, str]]) -> Table:
    """Orders per terminal state and reason, throughput, time from intake to shipped, and what was delivered."""
    ids = {"ids": order_ids}
    with engine_for(database_url).connect() as connection:
        outcomes = connection.execute(
            text("""SELECT status, coalesce(cancel_reason, ''), count(*) FROM orders
                    WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY 1, 2 ORDER BY 3 DESC"""),
            ids,
        ).all()
        p50, p99 = connection.execute(
            text("""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)),
                           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at))
                    FROM orders WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'shipped'"""),
            ids,
        ).one()
    table = Table("outcome", "reason", "orders", title="orderflow demo")
    for status, reason, number in outcomes:
        table.add_row(status, reason, str(number))
    table.add_section()
    table.add_row("throughput", "orders/s, intake to terminal", f"{len(order_ids) / elapsed_s:.1f}")
    if p50 is not None:
        table.add_row("time to ship", "p50 / p99 seconds", f"{p50:.2f} / {p99:.2f}")
    table.add_section()
    for row in delivered:
        table.add_row(*row)
    return table


def run(stack: Stack, orders: int, rate: float, processes: int, threads: int) -> bool:
    """Run the demo end to end; True when every order reached a terminal state."""
    from api.auth import mint_for
    from pipeline.config import get_settings

    log_path = stack.root / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    processes_line = f"starting API, {processes} workers x {threads} threads, webhook workers, reaper, loopback Stripe"
    console.print(f"{processes_line}, local carrier, SMTP sink, a shop's webhook endpoint (log: {log_path})")
    ports = Ports.free()
    with (
        sigterm_unwinds(),
        side_servers.mail_sink(log_path.parent, free_port()) as mail,
        ShopEndpoint(SHOP_FAILURE_RATE) as shop,
    ):
        with running_procfile(stack, ports, log_path, processes, threads, DEMO_FAULTS | mail.env):
            api = url(ports.api)
            console.print(f"metrics: {ports.metrics_line()}")
            console.print(f"e-mails: {mail.view_url}; the shop's endpoint: {shop.url}")
            catalogue = seed_catalogue(stack.database_url)
            token = mint_for(get_settings(), SHOP, ["orders:write", "orders:read"])
            with shop.registered(api, token):
                console.print(f"API ready at {api}; placing {orders} orders at {rate:.0f}/s")
                started = time.monotonic()
                order_ids = place_orders(api, token, catalogue, orders, rate)
                statuses = watch(stack.database_url, order_ids, timeout_s=max(120.0, orders / 5))
                elapsed = time.monotonic() - started
                with console.status("waiting for the shop to hear every order's final event ..."):
                    wait_for_finals(shop, final_events(stack.database_url, order_ids), timeout_s=60)
        delivered = deliveries(stack.database_url, order_ids, shop, mail)
    console.print(summary(stack.database_url, order_ids, elapsed, delivered))
    return sum(statuses[s] for s in TERMINAL_VALUES) == len(order_ids)


def deliveries(
    database_url: str, order_ids: list[str], shop: ShopEndpoint, mail: side_servers.SideServer
) -> list[tuple[str, str, str]]:
    """The summary's rows for what reached the shop's customers (e-mails) and the shop itself (its events)."""
    query = text("SELECT count(*) FROM order_events WHERE order_id = ANY(CAST(:ids AS uuid[]))")
    with engine_for(database_url).connect() as connection:
        written = connection.scalar(query, {"ids": order_ids})
    e_mails = httpx.get(mail.view_url, timeout=10).json()["messages"]
    received = shop.events()
    distinct = len({event["id"] for event in received})
    return [
        ("e-mails", "received by the SMTP sink", str(len(e_mails))),
        ("shop events", "delivered (distinct) / written", f"{distinct} / {written}"),
        ("", "requests: accepted / answered 500 and retried", f"{len(received)} / {shop.failed}"),
    ]

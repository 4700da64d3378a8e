"""The main job: the whole local stack with a stream of demo orders flowing through the saga."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models.db import engine_for
from models.status import TERMINAL_VALUES
from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from scripts.devstack.demo_orders import place_orders, seed_catalogue
from scripts.devstack.localstack import Stack, StackError, free_port
from scripts.devstack.processes import SOURCE_ROOT, wait_until_answers

console = Console()
DEMO_WEBHOOK_SECRET = "whsec_demo_local_only"


@contextmanager
def running_stack(stack: Stack, log_path: Path, processes: int, threads: int) -> Iterator[str]:
    """Run the Procfile (API, workers, reaper, loopback Stripe) under honcho; yields the API's URL."""
    api_port, stripe_port, metrics_port, reaper_port = free_port(), free_port(), free_port(), free_port()
    carrier_port, api_metrics_port = free_port(), free_port()
    metrics_dir = log_path.parent / "worker-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # multiprocess files of an earlier run would add up
    metrics_dir.mkdir()
    env = os.environ | {
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "API_PORT": str(api_port),
        "STRIPE_PORT": str(stripe_port),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_API_KEY": LOCAL_STRIPE_KEY,
        "STRIPE_TIMEOUT_S": "2",
        "WORKER_PROCESSES": str(processes),
        "WORKER_THREADS": str(threads),
        "STEP_LEASE_S": "15",
        "REAPER_INTERVAL_S": "2",
        "WORKER_METRICS_DIR": str(metrics_dir),
        "WORKER_METRICS_PORT": str(metrics_port),
        "REAPER_METRICS_PORT": str(reaper_port),
        "API_METRICS_PORT": str(api_metrics_port),
        "CARRIER_PORT": str(carrier_port),
        "CARRIER_API_BASE": f"http://127.0.0.1:{carrier_port}",
        "CARRIER_API_KEY": LOCAL_CARRIER_KEY,
        "CARRIER_TIMEOUT_S": "2",
        # Stripe forwards its signed events to the API, as `stripe listen --forward-to` does.
        "STRIPE_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
        "FAKE_STRIPE_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
        "FAKE_STRIPE_WEBHOOK_URL": f"http://127.0.0.1:{api_port}/v1/webhooks/stripe",
        # Faults a real shop meets: a flaky payment provider, notifier and carrier, charges that process a while.
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
    bin_dir = Path(sys.executable).parent  # the Procfile's commands come from this venv
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    honcho = str(bin_dir / "honcho")
    if not os.path.exists(honcho):
        raise StackError(f"no {honcho}: the demo runs the Procfile with honcho, from orderflow[local]")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [honcho, "start", "-f", str(SOURCE_ROOT / "Procfile"), "-d", str(SOURCE_ROOT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            api = f"http://127.0.0.1:{api_port}"
            wait_until_answers(f"{api}/readyz", process, 60, f"the stack did not become ready; see {log_path}")
            console.print(
                f"metrics: API http://127.0.0.1:{api_metrics_port}/metrics, workers http://127.0.0.1:{metrics_port}/metrics,"
                f" reaper http://127.0.0.1:{reaper_port}/metrics"
            )
            yield api
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group (workers finish their messages), SIGKILL what is left after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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


def summary(database_url: str, order_ids: list[str], elapsed_s: float) -> Table:
    """Orders per terminal state and reason, throughput, and time from intake to shipped."""
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
    return table


def run(stack: Stack, orders: int, rate: float, processes: int, threads: int) -> bool:
    """Run the demo end to end; True when every order reached a terminal state."""
    from api.auth import mint_for
    from pipeline.config import get_settings

    log_path = stack.root / "demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    processes_line = f"starting API, {processes} workers x {threads} threads, reaper, loopback Stripe, local carrier"
    console.print(f"{processes_line} (log: {log_path})")
    with running_stack(stack, log_path, processes, threads) as api:
        catalogue = seed_catalogue(stack.database_url)
        token = mint_for(get_settings(), "demo-shop", ["orders:write", "orders:read"])
        console.print(f"API ready at {api}; placing {orders} orders at {rate:.0f}/s")
        started = time.monotonic()
        order_ids = place_orders(api, token, catalogue, orders, rate)
        statuses = watch(stack.database_url, order_ids, timeout_s=max(120.0, orders / 5))
        elapsed = time.monotonic() - started
    console.print(summary(stack.database_url, order_ids, elapsed))
    return sum(statuses[s] for s in TERMINAL_VALUES) == len(order_ids)

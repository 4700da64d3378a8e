"""Intake load check: throughput and latency of POST /v1/orders next to baselines, in one run.

Starts its own throwaway database (on DATABASE_URL's server or the embedded Postgres) and a private
Redis, serves the API with one uvicorn process, and drives it with N concurrent keep-alive clients:

    .venv/bin/python -m scripts.bench.intake_load --seconds 10 --concurrency 16

Phases, each for --seconds: GET /healthz (framework floor), POST /insert on a bare FastAPI app that
does one INSERT (database-write floor), then POST /v1/orders (auth, rate limit, validation, pricing,
idempotency row, order + lines, enqueue).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer
from fastapi import FastAPI
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from models.db import engine_for
from pipeline.config import get_settings
from scripts.bench.database import LOAD_CLIENT
from scripts.devstack import localstack
from scripts.devstack.processes import SOURCE_ROOT

console = Console()
Request = Callable[[httpx.AsyncClient, int], Any]


@dataclass
class Result:
    """What one phase measured."""

    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def row(self) -> list[str]:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return [
            self.name,
            str(len(self.latencies)),
            str(self.errors),
            f"{len(self.latencies) / self.seconds:.0f}",
            f"{statistics.median(ordered) * 1000:.1f}",
            f"{p99 * 1000:.1f}",
        ]


def bare_app() -> FastAPI:
    """The database-write floor: one INSERT per request in its own transaction, nothing else."""
    app = FastAPI()
    engine = engine_for(os.environ["DATABASE_URL"])

    @app.post("/insert", status_code=201)
    def insert() -> dict[str, str]:
        row_id = str(uuid.uuid4())
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO load_probe (id) VALUES (:id)"), {"id": row_id})
        return {"id": row_id}

    return app


@contextmanager
def uvicorn(target: str, env: dict[str, str]) -> Iterator[str]:
    """One uvicorn process serving `target` (a factory); yields its base URL."""
    port = localstack.free_port()
    args = [sys.executable, "-m", "uvicorn", target, "--factory", "--port", str(port), "--log-level", "warning"]
    env = {"API_METRICS_PORT": "0", **env}  # one load run may serve two APIs side by side
    process = subprocess.Popen(args, env={**os.environ, **env}, cwd=SOURCE_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"uvicorn {target} did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


async def drive(name: str, base: str, request: Request, seconds: float, concurrency: int) -> Result:
    """Run `request` from `concurrency` clients in a closed loop for `seconds`."""
    result = Result(name, seconds)
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker(worker_id: int) -> None:
            n = 0
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await request(client, worker_id * 1_000_000 + n)
                elapsed, n = time.perf_counter() - started, n + 1
                if response.status_code < 300:
                    result.latencies.append(elapsed)
                else:
                    result.errors += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return result


def main(
    seconds: float = typer.Option(10.0, help="Length of each measured phase."),
    concurrency: int = typer.Option(16, help="Concurrent keep-alive clients."),
) -> None:
    """Measure each phase after a 1 s warm-up and print the table."""
    secret = secrets.token_urlsafe(32)
    with localstack.scratch_servers(get_settings().database_url, "orderflow_load") as servers:
        database_url, redis_url = servers.database_url, servers.redis_url
        product = seed(database_url)
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "JWT_SECRETS": f'["{secret}"]',
            "RATE_LIMIT_PER_S": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "LOG_LEVEL": "WARNING",
        }
        place = order_poster(secret, product)
        results = []
        with uvicorn("api.app:create_app", env) as api:
            results.append(measure("GET /healthz (API app)", api, healthz, seconds, concurrency))
        with uvicorn("scripts.bench.intake_load:bare_app", env) as bare:
            results.append(measure("POST one INSERT (bare FastAPI app)", bare, insert, seconds, concurrency))
        with uvicorn("api.app:create_app", env) as api:
            results.append(measure("POST /v1/orders", api, place, seconds, concurrency))
    title = f"intake load: 1 uvicorn process each, {concurrency} concurrent clients, {seconds:.0f} s per phase"
    table = Table("phase", "ok requests", "errors", "req/s", "p50 ms", "p99 ms", title=title)
    for result in results:
        table.add_row(*result.row())
    console.print(table)


def measure(name: str, base: str, request: Request, seconds: float, concurrency: int) -> Result:
    asyncio.run(drive("warm-up", base, request, 1.0, concurrency))
    return asyncio.run(drive(name, base, request, seconds, concurrency))


def seed(database_url: str) -> uuid.UUID:
    """The bare app's table and one product with stock for every order of the run."""
    with engine_for(database_url).begin() as connection:
        connection.execute(text("CREATE TABLE load_probe (id uuid PRIMARY KEY, at timestamptz DEFAULT now())"))
        product_id: uuid.UUID = connection.execute(
            text(
                "INSERT INTO products (sku, name, price_cents, total, available) "
                "VALUES ('load-mug', 'Mug', 1250, 1000000000, 1000000000) RETURNING id"
            )
        ).scalar_one()
        return product_id


def healthz(client: httpx.AsyncClient, n: int) -> Any:
    return client.get("/healthz")


def insert(client: httpx.AsyncClient, n: int) -> Any:
    return client.post("/insert")


def order_poster(secret: str, product: uuid.UUID) -> Request:
    """POST /v1/orders with a fresh Idempotency-Key per request (every request writes an order)."""
    from api.auth import mint_token

    headers = {"Authorization": f"Bearer {mint_token(secret, LOAD_CLIENT, ['orders:write'], 3600)}"}
    order = {
        "userId": "load",
        "items": [{"productId": str(product), "quantity": 1, "price": 1250}],
        "shippingAddress": {"street": "1 Main St", "city": "Springfield", "zipCode": "62701", "country": "US"},
        "paymentMethodId": "pm_card_visa",
    }

    def post(client: httpx.AsyncClient, n: int) -> Any:
        return client.post("/v1/orders", json=order, headers=headers | {"Idempotency-Key": uuid.uuid4().hex})

    return post


if __name__ == "__main__":
    typer.run(main)

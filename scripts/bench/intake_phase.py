"""The intake phase: POST /v1/orders against one uvicorn, in a closed loop, then an open loop (fixed rate)."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import ExitStack
from typing import Any

import httpx
import psycopg

from scripts.bench import intake_load
from scripts.bench.config import BenchConfig
from scripts.bench.database import Target, flush_redis, fresh_orders
from scripts.bench.meter import Meter, counters_delta, cpu_delta, per_order, quiet_counters
from scripts.bench.processes import api_server, clean_env


def intake_run(config: BenchConfig, target: Target, repetition: int) -> dict[str, Any]:
    """POST /v1/orders against one uvicorn: closed loop at a fixed concurrency, then open loop at a fixed rate."""
    secret = secrets.token_urlsafe(32)
    env = clean_env() | {
        "DATABASE_URL": target.database_url,
        "REDIS_URL": target.redis_url,
        "JWT_SECRETS": json.dumps([secret]),
        "RATE_LIMIT_PER_S": "1000000",
        "RATE_LIMIT_BURST": "1000000",
    }
    post = intake_load.order_poster(secret, target.product_ids[0])
    fresh_orders(target, 0, 0, tag="intake")
    stats_before = quiet_counters(target)
    with ExitStack() as stack:
        meter = stack.enter_context(Meter(target.libpq("postgres"), target.dbname, target.redis_url))
        base, api = stack.enter_context(api_server(env, target.log_dir, f"api-{repetition}", config.api_processes))
        meter.watch("api", api)
        asyncio.run(intake_load.drive("warm-up", base, post, 1.0, config.intake_concurrency))
        window = meter.snapshot()
        closed = asyncio.run(intake_load.drive("closed", base, post, config.intake_seconds, config.intake_concurrency))
        opened = asyncio.run(open_loop(base, post, config.intake_rate, config.intake_seconds))
        cpu = cpu_delta(window, meter.snapshot())
        if not meter.postgres_measured:
            target.note("Postgres CPU not measured: its backends are not local processes")
    stats = counters_delta(stats_before, quiet_counters(target))
    with psycopg.connect(target.libpq()) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    accepted = row[0] if row else 0
    flush_redis(target.redis_url)  # the API enqueued reserve_stock for every order; no worker will take them
    measured = len(closed.latencies) + len(opened.latencies)
    return {
        "closed": _latencies(closed) | {"concurrency": config.intake_concurrency},
        "open": _latencies(opened) | {"rate": config.intake_rate},
        "orders_per_s": len(closed.latencies) / closed.seconds,
        "orders_accepted": accepted,
        "commits_per_order": stats["xact_commit"] / max(1, accepted),
        "cpu_s_per_order": per_order(cpu, max(1, measured)),
        "peak_rss_mib_api": meter.peak_rss_mib("api"),
    }


async def open_loop(base: str, request: intake_load.Request, rate: float, seconds: float) -> intake_load.Result:
    """Send at `rate` per second whatever the answers do; latency counts from each request's scheduled time.

    One dispatcher starts each request at its time. Making all the tasks up front stalled the client for
    longer than the first requests' head start, and that stall was counted as their latency.
    """
    result = intake_load.Result(f"open loop {rate:.0f}/s", seconds)
    total = max(1, int(rate * seconds))
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        loop = asyncio.get_running_loop()

        async def one(n: int, scheduled: float, record: bool) -> None:
            try:
                ok = (await request(client, n)).status_code < 300
            except httpx.TransportError:  # e.g. the server closed a keep-alive connection as it was reused
                ok = False
            if not record:
                return
            if ok:
                result.latencies.append(loop.time() - scheduled)
            else:
                result.errors += 1

        async def at_rate(first: int, count: int, record: bool) -> float:
            """Requests first .. first+count-1 at `rate`, all answered; returns when the first was due."""
            start, started = loop.time(), []
            for n in range(count):
                scheduled = start + n / rate
                await asyncio.sleep(max(0.0, scheduled - loop.time()))
                started.append(asyncio.create_task(one(first + n, scheduled, record)))
            await asyncio.gather(*started)
            return start

        # One second at the same rate first, unrecorded, so the client has its connections open.
        warm = max(1, int(rate))
        await at_rate(0, warm, record=False)
        start = await at_rate(warm, total, record=True)
        result.seconds = max(seconds, loop.time() - start)
    return result


def _latencies(result: intake_load.Result) -> dict[str, Any]:
    return {
        "requests": len(result.latencies),
        "errors": result.errors,
        "per_s": len(result.latencies) / result.seconds,
        "p50_ms": _ms(percentile(result.latencies, 0.50)),
        "p99_ms": _ms(percentile(result.latencies, 0.99)),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000

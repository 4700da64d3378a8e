"""The list bench's requests: one uvicorn per table, the same sequential keep-alive GETs against each, interleaved.

Interleaving (each case on one table, then at once on the other) keeps a neighbour's load, which comes and goes
over minutes on a shared machine, from landing on one table's figures only.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import psycopg

from api.auth import mint_token
from api.pagination import decode_cursor
from scripts.bench import list_data as data
from scripts.bench.database import Target
from scripts.bench.intake_phase import percentile
from scripts.bench.meter import Meter, cpu_delta
from scripts.bench.processes import api_server, clean_env

CASES = (
    "client, first page",
    "client, deep page",
    "client, first page by status",
    "client, first page by userId",
    "admin, first page",
    "admin, deep page",
)
FILTERED = ("shipped", "cancelled")
ADMIN = "bench-admin"
Check = Callable[[list[dict[str, Any]]], bool]


@dataclass(frozen=True)
class Lists:
    """One table's requests: its servers, a token per client (None: admin), its deep pages, some users per client."""

    label: str
    target: Target
    clients: list[str]
    tokens: dict[str | None, str]
    deep: dict[str | None, data.DeepPage]
    users: dict[str, list[str]]


def prepare(label: str, target: Target, clients: list[str], size: int, pages: tuple[int, int], secret: str) -> Lists:
    """What the requests of one table need; `pages` is the deep page of a client's list and of admin's."""
    with psycopg.connect(target.libpq()) as conn:
        deep: dict[str | None, data.DeepPage] = {
            client: data.deep_page(conn, client, size, pages[0]) for client in clients
        }
        deep[None] = data.deep_page(conn, None, size, pages[1])
        users = {client: data.users_of(conn, client) for client in clients}
    tokens: dict[str | None, str] = {
        client: mint_token(secret, client, ["orders:read"], 4 * 3600) for client in clients
    }
    tokens[None] = mint_token(secret, ADMIN, ["admin"], 4 * 3600)
    return Lists(label, target, clients, tokens, deep, users)


def run_phases(
    tables: list[Lists], secret: str, size: int, samples: int, warmup: int, walk_clients: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Walk, then measure every case on every table (interleaved), then EXPLAIN each case's query; by table label."""
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        clients, meters = {}, {}
        for table in tables:
            target = table.target
            env = clean_env() | {
                "DATABASE_URL": target.database_url,
                "REDIS_URL": target.redis_url,
                "JWT_SECRETS": json.dumps([secret]),
                "JWT_AUDIENCE": "",
                "JWT_ISSUER": "",
                "RATE_LIMIT_PER_S": "1000000",
                "RATE_LIMIT_BURST": "1000000",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",  # server_times reads the access log
            }
            base, api = stack.enter_context(api_server(env, target.log_dir, f"list-api-{table.label}"))
            # Read at the two snapshots only: a sampling thread would add its own load to the client's.
            meter = Meter(target.libpq("postgres"), target.dbname, target.redis_url, interval_s=3600)
            meters[table.label] = stack.enter_context(meter)
            meters[table.label].watch("api", api)
            clients[table.label] = stack.enter_context(httpx.Client(base_url=base))
        for table in tables:
            walkers = [*table.clients[:walk_clients], None]
            walked = [latency for owner in walkers for latency in walk(clients[table.label], table, owner, size)]
            pages = {"client": table.deep[table.clients[0]].page, "admin": table.deep[None].page}
            results[table.label] = {"pages": pages, "walk": {"lists": [o or ADMIN for o in walkers], **stats(walked)}}
        before = {label: meter.snapshot() for label, meter in meters.items()}
        measured = sample(clients, tables, size, samples, warmup, random.Random(seed))
        for label, meter in meters.items():
            cpu = cpu_delta(before[label], meter.snapshot())
            requests = (warmup + samples) * len(CASES)
            results[label]["cpu_ms_per_request"] = {
                group: cpu.get(group, 0.0) * 1000 / requests for group in ("api", "postgres")
            }
    for table in tables:
        server = {case: stats(durations) for case, durations in server_times(table).items()}
        results[table.label]["cases"] = {
            case: measured[table.label][case] | {f"server_{key}": value for key, value in server[case].items()}
            for case in CASES
        }
        results[table.label]["plans"] = plans(table, size)
    return results


def walk(http: httpx.Client, table: Lists, owner: str | None, size: int) -> list[float]:
    """Follow `next` from the first page to the deep one; fails unless it arrives at the cursor computed in SQL."""
    deep, headers = table.deep[owner], {"Authorization": f"Bearer {table.tokens[owner]}"}
    path, latencies, cursor = f"/v1/orders?limit={size}", [], ""
    for page in range(1, deep.page):
        began = time.perf_counter()
        response = http.get(path, headers=headers)
        latencies.append(time.perf_counter() - began)
        body = response.json()
        if response.status_code != 200 or not body["next"]:
            raise RuntimeError(f"walking {owner or ADMIN}'s list: page {page} answered {response.status_code} {body}")
        path, cursor = body["next"], body["nextCursor"]
    at, order_id = decode_cursor(cursor, 2)
    if (datetime.fromisoformat(at), uuid.UUID(order_id)) != deep.key:
        raise RuntimeError(f"walking {owner or ADMIN}'s list reached {cursor}, not the computed {deep.cursor}")
    return latencies


def sample(
    clients: dict[str, httpx.Client], tables: list[Lists], size: int, samples: int, warmup: int, rng: random.Random
) -> dict[str, dict[str, dict[str, Any]]]:
    """`warmup` unrecorded rounds, then `samples`; a round asks each case of each table once, for a random client."""
    latencies: dict[str, dict[str, list[float]]] = {table.label: {case: [] for case in CASES} for table in tables}
    errors = {table.label: dict.fromkeys(CASES, 0) for table in tables}
    rows = {table.label: dict.fromkeys(CASES, size) for table in tables}
    for round_ in range(warmup + samples):
        for index, case in enumerate(CASES):
            for table in tables if round_ % 2 else tables[::-1]:
                params, token, check = request(case, table, size, rng)
                # The API logs this id with its own duration: the server's side of the same request.
                headers = {"Authorization": f"Bearer {token}", "X-Request-ID": f"lb{'w' * (round_ < warmup)}.{index}"}
                began = time.perf_counter()
                response = clients[table.label].get("/v1/orders", params=params, headers=headers)
                elapsed = time.perf_counter() - began
                if round_ < warmup:
                    continue
                page = response.json().get("data") if response.status_code == 200 else None
                if page is None or not check(page):
                    errors[table.label][case] += 1
                    continue
                latencies[table.label][case].append(elapsed)
                rows[table.label][case] = min(rows[table.label][case], len(page))
    return {
        table.label: {
            case: stats(latencies[table.label][case])
            | {"errors": errors[table.label][case], "rows_min": rows[table.label][case]}
            for case in CASES
        }
        for table in tables
    }


def request(case: str, table: Lists, size: int, rng: random.Random) -> tuple[dict[str, str], str, Check]:
    """The query, token and answer check of one request of `case` (a filter may rightly find nothing)."""
    owner = None if case.startswith("admin") else rng.choice(table.clients)
    params, token = {"limit": str(size)}, table.tokens[owner]

    def owned(page: list[dict[str, Any]]) -> bool:
        return owner is None or all(order["userId"].startswith(f"{owner}/") for order in page)

    if case.endswith("deep page"):
        first = table.deep[owner].first_id
        params["cursor"] = table.deep[owner].cursor
        return params, token, lambda page: bool(page) and page[0]["id"] == first and owned(page)
    if case.endswith("by status"):
        status = params["status"] = rng.choice(FILTERED)
        return params, token, lambda page: owned(page) and all(order["status"] == status for order in page)
    if case.endswith("by userId"):
        user = params["userId"] = rng.choice(table.users[str(owner)])
        return params, token, lambda page: bool(page) and all(order["userId"] == user for order in page)
    return params, token, lambda page: len(page) == size and owned(page)


def server_times(table: Lists) -> dict[str, list[float]]:
    """Each measured request's duration as the API logged it (its access log line carries our request id)."""
    durations: dict[str, list[float]] = {case: [] for case in CASES}  # empty unless the log is JSON at INFO
    with open(table.target.log_dir / f"list-api-{table.label}.log") as log:
        for line in log:
            entry = json.loads(line) if line.startswith("{") else {}
            request_id = str(entry.get("request_id", ""))
            if entry.get("event") == "request" and request_id.startswith("lb."):
                durations[CASES[int(request_id.split(".")[1])]].append(entry["duration_ms"] / 1000)
    return durations


def plans(table: Lists, size: int) -> dict[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each case's query, for the first client, after the measurement (warm cache)."""
    first = table.clients[0]
    with psycopg.connect(table.target.libpq()) as conn:
        data.explain(conn, size, first)  # the connection's first statement also loads the catalogue: not timed
        return {
            CASES[0]: data.explain(conn, size, first),
            CASES[1]: data.explain(conn, size, first, table.deep[first]),
            CASES[2]: data.explain(conn, size, first, status=FILTERED[1]),
            CASES[3]: data.explain(conn, size, first, user=table.users[first][0]),
            CASES[4]: data.explain(conn, size),
            CASES[5]: data.explain(conn, size, after=table.deep[None]),
        }


def stats(latencies: list[float]) -> dict[str, Any]:
    """Count, p50, p90, p99 and max in milliseconds."""
    ms = {f"p{round(q * 100)}_ms": (percentile(latencies, q) or 0.0) * 1000 for q in (0.5, 0.9, 0.99)}
    return {"samples": len(latencies)} | ms | {"max_ms": max(latencies, default=0.0) * 1000}

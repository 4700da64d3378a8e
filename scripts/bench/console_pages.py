"""How fast the operator console's pages answer on the bench's database (with `--history`, a million orders).

Each page is asked for REQUESTS times through the real app (its routes, middleware, queries and templates, in
process through Starlette's TestClient, signed in as an admin), and its p99 is reported in milliseconds.
"""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

import psycopg
from pydantic import SecretStr

from scripts.bench.database import Target

REQUESTS = 50
PAGE_ROWS = 50
DEEP_PAGE = 1000


def page_p99_ms(target: Target) -> dict[str, float]:
    """p99 ms of each console page: the overview, the order list (first, filtered, 1,000th page), one order, stuck."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import mint_token
    from api.pagination import encode_cursor
    from pipeline.config import Settings

    secret = secrets.token_urlsafe(32)
    settings = Settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        jwt_secrets=[SecretStr(secret)],
        api_metrics_port=0,
        log_level="WARNING",
    )
    sample = _sample(target.libpq(), DEEP_PAGE * PAGE_ROWS)
    pages = {"console overview": "/console", "console orders": "/console/orders", "console stuck": "/console/stuck"}
    if sample["client"]:
        pages["console orders of one client, cancelled"] = f"/console/orders?client={sample['client']}&status=cancelled"
        pages["console one order"] = f"/console/orders/{sample['order']}"
    if sample["deep"]:
        at, order_id = sample["deep"]
        pages[f"console orders page {DEEP_PAGE}"] = f"/console/orders?cursor={encode_cursor([at, order_id])}"
    timings = {}
    with TestClient(create_app(settings)) as client:
        signed_in = client.post("/console/sign-in", data={"token": mint_token(secret, "bench", ["admin"])})
        assert signed_in.status_code == 200, signed_in.text
        for name, url in pages.items():
            timings[f"{name} p99"] = _p99_ms(client, url)
    return timings


def _sample(libpq: str, deep_offset: int) -> dict[str, Any]:
    """A client with orders, one of its orders, and the position the list's 1,000th page starts after."""
    with psycopg.connect(libpq) as conn:
        client = conn.execute("SELECT client_id, id FROM orders ORDER BY created_at DESC LIMIT 1").fetchone()
        deep = conn.execute(
            "SELECT created_at, id FROM orders ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1", [deep_offset - 1]
        ).fetchone()
    return {
        "client": client[0] if client else None,
        "order": client[1] if client else None,
        "deep": (deep[0].isoformat(), str(deep[1])) if deep else None,
    }


def _p99_ms(client: Any, url: str) -> float:
    took = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        answer = client.get(url)
        took.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, f"{url}: {answer.status_code}"
    return statistics.quantiles(took, n=100)[98]

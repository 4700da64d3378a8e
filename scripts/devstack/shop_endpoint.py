"""A shop's webhook endpoint on the loopback, as the demo and the chaos run register: it verifies every request
with the `standardwebhooks` library (as the README tells shops to), fails a share of them with a 500, and keeps
what it accepted; and the audit of what it got against the outbox's own record.

The audit: every terminal order's final event arrived, each arrival was signed with the endpoint's secret,
webhook-id is the event's id, and one order's sequence number never names two event ids (a redelivery
repeats an id; an invented or doubled event would bring a new one).
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx
from sqlalchemy import text
from standardwebhooks import Webhook

from models.db import engine_for


class ShopEndpoint:
    """A threaded HTTP receiver on the loopback, keeping every verified event it accepted (a context manager)."""

    def __init__(self, failure_rate: float = 0.0) -> None:
        self.failure_rate = failure_rate
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.unverified = 0
        self.failed = 0  # requests answered with a 500 on purpose
        self.secret: str | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint, rng = self, random.Random(11)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                failing = rng.random() < endpoint.failure_rate
                status = endpoint.fail() if failing else endpoint.accept(body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the audit reports
                return

        return Handler

    def fail(self) -> int:
        with self.lock:
            self.failed += 1
        return 500

    def accept(self, body: bytes, headers: Mapping[str, str]) -> int:
        """204 for an event signed with our secret (kept), 400 otherwise (counted)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            assert self.secret is not None
            event = Webhook(self.secret).verify(body, lowered)
        except Exception:
            with self.lock:
                self.unverified += 1
            return 400
        with self.lock:
            self.received.append(event | {"webhook-id": lowered.get("webhook-id")})
        return 204

    @contextmanager
    def registered(self, api_url: str, token: str) -> Iterator[None]:
        """Registered for every event type of the token's client (its secret kept) until the block ends, then
        deleted: an endpoint left behind would be sent the next run's events at a port nobody listens on."""
        headers = {"Authorization": f"Bearer {token}"}
        endpoints = f"{api_url}/v1/webhook-endpoints"
        answer = httpx.post(endpoints, json={"url": self.url, "eventTypes": []}, headers=headers, timeout=10)
        answer.raise_for_status()
        self.secret = answer.json()["secret"]
        try:
            yield
        finally:
            httpx.delete(f"{endpoints}/{answer.json()['id']}", headers=headers, timeout=10).raise_for_status()

    def events(self) -> list[dict[str, Any]]:
        """Every event accepted so far, a redelivered one as often as it came, with its webhook-id header."""
        with self.lock:
            return list(self.received)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def final_events(database_url: str, order_ids: list[str]) -> dict[str, str]:
    """Each of these orders' last event id, by order id, from the outbox, for those that are terminal."""
    query = text("""
        SELECT DISTINCT ON (e.order_id) e.order_id, e.id FROM order_events e JOIN orders o ON o.id = e.order_id
        WHERE e.order_id = ANY(CAST(:ids AS uuid[])) AND o.status IN ('shipped', 'cancelled', 'needs_attention')
        ORDER BY e.order_id, e.sequence DESC""")
    with engine_for(database_url).connect() as connection:
        return {str(order): str(event) for order, event in connection.execute(query, {"ids": order_ids})}


def wait_for_finals(endpoint: ShopEndpoint, finals: dict[str, str], timeout_s: float) -> None:
    """Until the shop has every final event (retries and re-drives take a while), or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(finals.values()) <= {event["id"] for event in endpoint.events()}:
            return
        time.sleep(1)


def audit_deliveries(endpoint: ShopEndpoint, finals: dict[str, str]) -> dict[str, list[str]]:
    """What the shop got against what the outbox holds; each check lists the orders (or ids) that break it."""
    received = endpoint.events()
    with endpoint.lock:
        unverified = endpoint.unverified
    ids_by_position: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in received:
        ids_by_position[(event["data"]["order"]["id"], event["sequence"])].add(event["id"])
    got = {event["id"] for event in received}
    return {
        "webhook: a terminal order's final event never reached the shop": sorted(
            order for order, event in finals.items() if event not in got
        ),
        "webhook: one order's sequence number came with two event ids": sorted(
            f"{order}#{sequence}" for (order, sequence), ids in ids_by_position.items() if len(ids) > 1
        ),
        "webhook: webhook-id differs from the event's id": sorted(
            str(event["id"]) for event in received if event["webhook-id"] != event["id"]
        ),
        "webhook: requests that failed signature verification": ["unverified"] * unverified,
    }


def summary(endpoint: ShopEndpoint) -> str:
    ids = [event["id"] for event in endpoint.events()]
    return f"{len(ids)} webhook requests accepted, {len(set(ids))} distinct events ({endpoint.failure_rate:.0%} 500s)"

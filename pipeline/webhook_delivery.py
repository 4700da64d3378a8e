"""One webhook POST, signed with the Standard Webhooks scheme, and when to try again after one that failed.

The request goes to the address the URL guard checked (the Host header and TLS name stay the URL's host), never
follows a redirect, waits at most WEBHOOK_TIMEOUT_S per phase, and reads at most WEBHOOK_MAX_RESPONSE_BYTES of
the answer. Only a 2xx counts as delivered. `webhook-id` is the event's id, so every retry and every
redelivery of an event carries the same id and a receiver can drop the copies.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from pipeline.url_guard import Target

USER_AGENT = "orderflow-webhooks/1"
MAX_ERROR_CHARS = 500
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: a response code or an error, and how long it took."""

    started_at: datetime
    latency_ms: int
    response_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def body_of(payload: dict[str, Any]) -> str:
    """The event as sent: compact JSON of the stored payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signed_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers (and the content type) for this body."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def post(
    target: Target, secret: str, message_id: str, body: str, *, timeout_s: float, max_response_bytes: int
) -> Attempt:
    """POST the signed body to the target once; never raises for what the network or the server does."""
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    headers = signed_headers(secret, message_id, body, started_at)
    headers["host"] = httpx.URL(target.url).netloc.decode("ascii")  # the URL's host[:port], as without pinning
    code, error = None, None
    try:
        with (
            httpx.Client(follow_redirects=False, timeout=timeout_s, trust_env=False) as client,
            client.stream(
                "POST",
                httpx.URL(target.url).copy_with(host=target.address),
                content=body.encode(),
                headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response,
        ):
            code = response.status_code
            excerpt = read_capped(response, max_response_bytes)
            if not 200 <= code < 300:
                error = f"HTTP {code}: {excerpt[:EXCERPT_CHARS]}" if excerpt else f"HTTP {code}"
    except httpx.TimeoutException as exc:
        error = f"timeout after {timeout_s:g} s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    latency_ms = int((time.monotonic() - clock) * 1000)
    return Attempt(started_at, latency_ms, code, error[:MAX_ERROR_CHARS] if error else None)


def read_capped(response: httpx.Response, max_bytes: int) -> str:
    """At most max_bytes of the body, decoded leniently; the rest is never read."""
    kept = bytearray()
    for chunk in response.iter_raw():
        kept += chunk[: max_bytes - len(kept)]
        if len(kept) >= max_bytes:
            break
    return kept.decode("utf-8", "replace")


def backoff_s(attempts: int, base_s: float, cap_s: float, rand: random.Random | None = None) -> float:
    """Seconds to wait after the attempts-th failure: base x 2^(attempts-1) capped, then jittered to 50-100%."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempts - 1, 0), 40))
    jitter: float = (rand or random.Random()).uniform(0, ceiling / 2)  # noqa: S311  (jitter, not a secret)
    return ceiling / 2 + jitter

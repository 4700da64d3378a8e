"""The HTTP client the Stripe SDK talks through: one urllib3 pool per process (pipeline.http_pool)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe
import urllib3

from pipeline.http_pool import pool_manager

Headers = Mapping[str, str] | None
Usage = list[str] | None
Answer = tuple[Any, int, Mapping[str, str]]  # body (bytes, or the response to stream), status, headers


class Urllib3Client(stripe.HTTPClient):
    """The SDK's requests sent on a urllib3 pool manager: thread-safe, connections kept alive.

    The SDK's own `RequestsClient` wraps the same urllib3 call in a requests session (adapters, hooks,
    cookie and header merging, proxy and ~/.netrc lookups): on a saga step that was more worker CPU than
    the HTTP exchange itself. TLS is verified against the CA bundle the SDK ships, as its clients do.
    Nothing is retried here: retries belong to the saga, always under the same idempotency key.
    """

    name = "urllib3"

    def __init__(self, api_base: str | None, timeout_s: float) -> None:
        super().__init__()
        self._pool = pool_manager(api_base or "https://api.stripe.com", timeout_s, ca_certs=stripe.ca_bundle_path)

    # The SDK's interface: `_usage` is its telemetry, which its own clients take and drop as well.
    def request(
        self, method: str, url: str, headers: Headers, post_data: Any = None, *, _usage: Usage = None
    ) -> Answer:
        response = self._send(method, url, headers, post_data, stream=False)
        return response.data, response.status, response.headers

    def request_stream(
        self, method: str, url: str, headers: Headers, post_data: Any = None, *, _usage: Usage = None
    ) -> Answer:
        response = self._send(method, url, headers, post_data, stream=True)
        return response, response.status, response.headers

    def close(self) -> None:
        self._pool.clear()

    def _send(self, method: str, url: str, headers: Headers, body: Any, *, stream: bool) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method, url, body=body, headers=headers, redirect=False, preload_content=not stream
            )
        except urllib3.exceptions.HTTPError as error:
            # Never sent, or sent with the answer lost: the SDK's APIConnectionError, which the saga treats as in doubt.
            message = f"Unexpected error communicating with Stripe. (Network error: {type(error).__name__}: {error})"
            raise stripe.APIConnectionError(message, should_retry=False) from error  # type: ignore[no-untyped-call]


def http_client(api_base: str | None, timeout_s: float) -> Urllib3Client:
    """The process's Stripe HTTP client (`api_base=None`: the real Stripe)."""
    return Urllib3Client(api_base, timeout_s)

"""BodyLimitMiddleware picks a body limit per path prefix, with no server behind it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from api.middleware import BodyLimitMiddleware


async def echo_size(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers 200 with the number of body bytes it was handed."""
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(message.get("body", b""))).encode()})


def post(middleware: BodyLimitMiddleware, path: str, size: int, root_path: str = "") -> tuple[int, Any]:
    """POST `size` bytes (in one chunk, no Content-Length) through the middleware: (status, decoded body)."""
    scope = {"type": "http", "method": "POST", "path": root_path + path, "root_path": root_path, "headers": []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * size, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


LIMITS = BodyLimitMiddleware(echo_size, max_bytes=10, limits={"/v1/webhooks/": 100, "/v1/webhooks/big/": 1000})


@pytest.mark.parametrize(
    "path, limit",
    [
        ("/v1/orders", 10),
        ("/v1/webhooks", 10),
        ("/v1/webhooksx", 10),
        ("/v1/webhooks/stripe", 100),
        ("/v1/webhooks/big/one", 1000),
    ],
)
def test_a_path_gets_the_limit_of_its_longest_prefix_or_the_default(path: str, limit: int) -> None:
    assert post(LIMITS, path, limit) == (200, limit)
    status, error = post(LIMITS, path, limit + 1)
    assert status == 413 and error["code"] == "PAYLOAD_TOO_LARGE" and error["details"] == {"maxBytes": limit}


def test_the_prefix_is_matched_below_the_root_path_the_app_is_mounted_under() -> None:
    assert post(LIMITS, "/v1/webhooks/stripe", 100, root_path="/shop") == (200, 100)
    assert post(LIMITS, "/v1/webhooks/stripe", 101, root_path="/shop")[0] == 413


def test_without_prefixes_every_path_gets_the_default() -> None:
    plain = BodyLimitMiddleware(echo_size, max_bytes=10)

    assert post(plain, "/v1/webhooks/stripe", 10) == (200, 10)
    assert post(plain, "/v1/webhooks/stripe", 11)[0] == 413

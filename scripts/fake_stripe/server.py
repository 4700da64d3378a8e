"""Running the fake Stripe: `serve()` in the foreground, or `FakeStripeServer` in a thread for tests."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

import uvicorn

from .app import create_app
from .faults import Faults
from .webhooks import WebhookTarget

Json = dict[str, Any]


def serve(
    host: str = "127.0.0.1", port: int = 12111, faults: Faults | None = None, webhooks: WebhookTarget | None = None
) -> None:
    """Run the server until interrupted."""
    uvicorn.run(create_app(faults, webhooks), host=host, port=port, log_level="warning")


class FakeStripeServer:
    """The fake Stripe on a free loopback port, in a background thread, with helpers for its control API."""

    def __init__(
        self, faults: Faults | None = None, host: str = "127.0.0.1", webhooks: WebhookTarget | None = None
    ) -> None:
        # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
        # without it every keep-alive request pays a ~40 ms Nagle / delayed-ACK stall.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(faults, webhooks), log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, wait_s: float = 10.0) -> FakeStripeServer:
        """Start serving and wait until the port answers."""
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake stripe server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                raise ValueError(f"{method} {path} -> {error.code}: {error.read().decode()}") from None

    def set_faults(self, **settings: float) -> Json:
        """Change fault and behaviour settings (any field of `Faults`); returns all of them."""
        result: Json = self._control("POST", "/_control/faults", settings)
        return result

    def reset(self) -> None:
        """Drop all objects, events and idempotency keys; restore the start-up faults and webhook target."""
        self._control("POST", "/_control/reset", {})

    def ledger(self) -> list[Json]:
        """Every PaymentIntent the server holds, with what it received, refunded and lost to disputes."""
        result: list[Json] = self._control("GET", "/_control/ledger")
        return result

    def configure_webhooks(self, url: str, secret: str) -> Json:
        """Forward every new event, signed with `secret`, to `url` (as `stripe listen --forward-to` does)."""
        result: Json = self._control("POST", "/_control/webhooks", {"url": url, "secret": secret})
        return result

    def disable_webhooks(self) -> None:
        """Stop forwarding events (pending deliveries are dropped; events are still recorded)."""
        self._control("DELETE", "/_control/webhooks")

    def refund_from_dashboard(self, intent_id: str, amount: int | None = None, status: str | None = None) -> Json:
        """Refund as the dashboard does (all that is left by default); `status` forces succeeded or pending."""
        body: Json = {"payment_intent": intent_id, "amount": amount, "status": status}
        result: Json = self._control("POST", "/_control/refunds", {k: v for k, v in body.items() if v is not None})
        return result

    def open_dispute(self, intent_id: str, reason: str = "fraudulent") -> Json:
        """The cardholder's bank disputes the intent's charge; returns the dispute (needs_response)."""
        result: Json = self._control("POST", "/_control/disputes", {"payment_intent": intent_id, "reason": reason})
        return result

    def close_dispute(self, dispute_id: str, status: str) -> Json:
        """Close a dispute as `won` or `lost` (a lost one withdraws its amount)."""
        result: Json = self._control("POST", f"/_control/disputes/{dispute_id}/close", {"status": status})
        return result

    def settle_intent(self, intent_id: str, outcome: str) -> Json:
        """End a processing (or requires_action) intent now as `succeeded` or `failed`; returns the intent."""
        result: Json = self._control("POST", f"/_control/intents/{intent_id}/settle", {"outcome": outcome})
        return result

    def settle_refund(self, refund_id: str, outcome: str) -> Json:
        """End a pending refund now as `succeeded` or `failed`; returns the refund."""
        result: Json = self._control("POST", f"/_control/refunds/{refund_id}/settle", {"outcome": outcome})
        return result

    def events(self) -> list[Json]:
        """Every event emitted since the last reset, oldest first, each with its `delivery` state."""
        result: list[Json] = self._control("GET", "/_control/events")
        return result

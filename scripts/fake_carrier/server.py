"""Running the fake carrier: `serve()` in the foreground, or `FakeCarrierServer` in a thread for tests."""

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


def serve(host: str = "127.0.0.1", port: int = 12112, faults: Faults | None = None) -> None:
    """Run the server until interrupted."""
    uvicorn.run(create_app(faults), host=host, port=port, log_level="warning")


class FakeCarrierServer:
    """The fake carrier on a free loopback port, in a background thread, with helpers for its control API."""

    def __init__(self, faults: Faults | None = None, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
        # without it every keep-alive request pays a ~40 ms Nagle / delayed-ACK stall.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(faults), log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, wait_s: float = 10.0) -> FakeCarrierServer:
        """Start serving and wait until the port answers."""
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake carrier server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeCarrierServer:
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

    def set_faults(self, **settings: float) -> dict[str, Any]:
        """Change fault settings (error_rate, lost_answer_rate, latency_ms, timeout_delay_s, pickup_delay_s, seed)."""
        result: dict[str, Any] = self._control("POST", "/_control/faults", settings)
        return result

    def reset(self) -> None:
        """Drop all shipments and idempotency keys, and restore the start-up faults."""
        self._control("POST", "/_control/reset", {})

    def ledger(self) -> list[dict[str, Any]]:
        """Every shipment the server holds (id, orderId, idempotencyKey, status as of now, trackingNumber, ...)."""
        result: list[dict[str, Any]] = self._control("GET", "/_control/ledger")
        return result

    def pick_up(self, shipment_id: str) -> dict[str, Any]:
        """Have the courier pick the shipment up now; returns it (ValueError for unknown or cancelled ones)."""
        result: dict[str, Any] = self._control("POST", f"/_control/shipments/{shipment_id}/pickup", {})
        return result

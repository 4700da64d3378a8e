"""Running the fake carrier: `serve()` in the foreground, or `FakeCarrierServer` in a thread for tests."""

from __future__ import annotations

from typing import Any

import uvicorn

from scripts.devstack.loopback import LoopbackServer

from .app import create_app
from .faults import Faults


def serve(host: str = "127.0.0.1", port: int = 12112, faults: Faults | None = None) -> None:
    """Run the server until interrupted."""
    uvicorn.run(create_app(faults), host=host, port=port, log_level="warning")


class FakeCarrierServer(LoopbackServer):
    """The fake carrier on a free loopback port, in a background thread, with helpers for its control API."""

    name = "fake carrier server"

    def __init__(self, faults: Faults | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(create_app(faults), host)

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

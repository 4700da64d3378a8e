"""Running the fake Stripe: `serve()` in the foreground, or `FakeStripeServer` in a thread for tests."""

from __future__ import annotations

from typing import Any

import uvicorn

from scripts.devstack.loopback import LoopbackServer

from .app import create_app
from .faults import Faults
from .webhooks import WebhookTarget

Json = dict[str, Any]


def serve(
    host: str = "127.0.0.1", port: int = 12111, faults: Faults | None = None, webhooks: WebhookTarget | None = None
) -> None:
    """Run the server until interrupted."""
    uvicorn.run(create_app(faults, webhooks), host=host, port=port, log_level="warning")


class FakeStripeServer(LoopbackServer):
    """The fake Stripe on a free loopback port, in a background thread, with helpers for its control API."""

    name = "fake stripe server"

    def __init__(
        self, faults: Faults | None = None, host: str = "127.0.0.1", webhooks: WebhookTarget | None = None
    ) -> None:
        super().__init__(create_app(faults, webhooks), host)

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

"""A Stripe-compatible loopback server for local runs and tests: test cards, idempotency, injected faults.

Concurrent requests that share an Idempotency-Key are serialized (one lock guards all state), so the second
one replays the first one's saved answer rather than getting a 409. Injected 500s and 429s are answered before
the endpoint runs, so nothing is applied or saved for them; an injected timeout applies the request and saves
its answer, then withholds the response until the client disconnects (or `timeout_delay_s` passes).
"""

from __future__ import annotations

from .app import create_app
from .faults import Faults
from .server import FakeStripeServer, serve

__all__ = ["FakeStripeServer", "Faults", "create_app", "serve"]

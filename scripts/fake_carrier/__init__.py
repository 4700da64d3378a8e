"""A carrier (3PL) loopback server for local runs and tests: shipments, idempotency keys, voids, pickup, faults.

Concurrent requests that share an Idempotency-Key are serialized (one lock guards all state), so the second
one replays the first one's saved answer. An injected 500 is answered before the endpoint runs, so nothing is
applied or saved; an injected lost answer applies the request (and saves it under its key), then withholds the
response until the client disconnects (or `timeout_delay_s` passes). A shipment is picked up `pickup_delay_s`
after it was created unless voided first; pickup is evaluated lazily whenever the shipment is read.
"""

from __future__ import annotations

from .app import create_app
from .faults import Faults
from .server import FakeCarrierServer, serve

__all__ = ["FakeCarrierServer", "Faults", "create_app", "serve"]

"""The local notifier and shipper: they record what they "send", honour idempotency keys, inject faults."""

from __future__ import annotations

import random
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from models.db import run_scalar, single_statements
from models.tables import LOCAL_DELIVERIES
from pipeline.errors import TransientError
from pipeline.retention import Prune

_RECORD = insert(LOCAL_DELIVERIES)
# A replayed key updates nothing but still returns the first delivery's id, in one round trip.
_FIRST_WINS = _RECORD.on_conflict_do_update(
    index_elements=["idempotency_key"], set_={"idempotency_key": _RECORD.excluded.idempotency_key}
).returning(LOCAL_DELIVERIES.c.id)


class LocalRecorder:
    """A stand-in provider whose records live in `local_deliveries`, one row per idempotency key."""

    def __init__(self, database_url: str, provider: str, fault_rate: float = 0.0, seed: int | None = None) -> None:
        self.database_url = database_url
        self.provider = provider
        self.fault_rate = fault_rate
        self._random = random.Random(seed)

    def deliver(self, order_id: uuid.UUID, idempotency_key: str, payload: dict[str, Any]) -> str:
        """Record the delivery once per key and return its reference; a replayed key returns the first one."""
        if self._random.random() < self.fault_rate:
            raise TransientError(f"injected {self.provider} fault", provider=self.provider)
        delivery = {
            "provider": self.provider,
            "idempotency_key": idempotency_key,
            "order_id": order_id,
            "payload": Jsonb(payload),
        }
        with single_statements(self.database_url) as connection:  # a prepared statement: once per notice
            delivery_id = run_scalar(connection, _FIRST_WINS, delivery)
        return f"{self.provider}-{delivery_id}"


# Retention: the local stack's records of what it "sent".
PRUNE_LOCAL_DELIVERIES = Prune(
    "local_deliveries",
    "created_at",
    "local_delivery_ttl_s",
    text("""DELETE FROM local_deliveries WHERE id = ANY(ARRAY(
                SELECT id FROM local_deliveries WHERE created_at < now() - make_interval(secs => :older_than_s)
                ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED))"""),
)

"""The one writer of webhook_endpoints, webhook_deliveries, webhook_attempts and webhook_fanout.

Endpoints are registered, changed and disabled here; the fan-out turns committed order events into deliveries
under the cursor row's lock, so two fan-outs never create one twice nor skip one; a delivery is claimed before
its POST and settled after it, each in its own short transaction (no transaction is open while a shop's
server is called). An endpoint hears an order's events in sequence: a delivery waits while an earlier one of
the same order to the same endpoint is pending, and the one that settles hands over to the next.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from pipeline.order_events import committed_after

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
DISABLED_BY_CLIENT = "disabled by the client"
START = (0, uuid.UUID(int=0))
ENDPOINT_COLUMNS = "id, client_id, url, event_types, enabled, disabled_reason, failing_since, created_at, updated_at"
# One owner filter for every endpoint statement: `:owner` NULL is admin (every client's).
OWNED = "id = :id AND (CAST(:owner AS text) IS NULL OR client_id = :owner)"
EARLIER_PENDING = """EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id
                      AND p.order_id = d.order_id AND p.sequence < d.sequence AND p.status = 'pending')"""


def new_secret() -> str:
    """A signing secret in the Standard Webhooks format: whsec_ and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def create_endpoint(connection: Connection, client_id: str, url: str, event_types: list[str]) -> RowMapping:
    """A new enabled endpoint with a fresh secret (the row carries it: show it once)."""
    return (
        connection.execute(
            text(f"""INSERT INTO webhook_endpoints (client_id, url, event_types, secret)
                 VALUES (:client_id, :url, :event_types, :secret) RETURNING {ENDPOINT_COLUMNS}, secret"""),
            {"client_id": client_id, "url": url, "event_types": event_types, "secret": new_secret()},
        )
        .one()
        ._mapping
    )


def update_endpoint(
    connection: Connection,
    endpoint_id: uuid.UUID,
    owner: str | None,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
) -> RowMapping | None:
    """Change what is given; enabling clears the disable flag, disabling skips the deliveries still pending."""
    row = connection.execute(
        text(f"""UPDATE webhook_endpoints SET url = COALESCE(CAST(:url AS varchar), url),
                     event_types = COALESCE(CAST(:event_types AS varchar(40)[]), event_types),
                     enabled = COALESCE(CAST(:enabled AS boolean), enabled),
                     disabled_reason = CASE WHEN CAST(:enabled AS boolean) IS NULL THEN disabled_reason
                                            WHEN CAST(:enabled AS boolean) THEN NULL
                                            ELSE COALESCE(disabled_reason, :by_client) END,
                     failing_since = CASE WHEN CAST(:enabled AS boolean) THEN NULL ELSE failing_since END,
                     updated_at = now()
                 WHERE {OWNED} RETURNING {ENDPOINT_COLUMNS}"""),
        {
            "id": endpoint_id,
            "owner": owner,
            "url": url,
            "event_types": event_types,
            "enabled": enabled,
            "by_client": DISABLED_BY_CLIENT,
        },
    ).one_or_none()
    if row is not None and enabled is False:
        _skip_pending(connection, endpoint_id, DISABLED_BY_CLIENT)
    return None if row is None else row._mapping


def rotate_secret(connection: Connection, endpoint_id: uuid.UUID, owner: str | None) -> RowMapping | None:
    """A new secret; the old one signs nothing from the commit on."""
    row = connection.execute(
        text(
            f"UPDATE webhook_endpoints SET secret = :secret, updated_at = now() WHERE {OWNED} "
            f"RETURNING {ENDPOINT_COLUMNS}, secret"
        ),
        {"id": endpoint_id, "owner": owner, "secret": new_secret()},
    ).one_or_none()
    return None if row is None else row._mapping


def delete_endpoint(connection: Connection, endpoint_id: uuid.UUID, owner: str | None) -> bool:
    """Delete the endpoint with its deliveries and attempts; False if the client has no such endpoint."""
    deleted = connection.execute(
        text(f"DELETE FROM webhook_endpoints WHERE {OWNED}"), {"id": endpoint_id, "owner": owner}
    )
    return deleted.rowcount > 0


def _skip_pending(connection: Connection, endpoint_id: uuid.UUID, why: str) -> None:
    connection.execute(
        text("""UPDATE webhook_deliveries SET status = 'skipped', last_error = :why, claimed_until = NULL,
                    updated_at = now() WHERE endpoint_id = :id AND status = 'pending'"""),
        {"id": endpoint_id, "why": why},
    )


# ---- fan-out, re-drive, redeliver ------------------------------------------------------------------------

FAN_OUT = text("""
    INSERT INTO webhook_deliveries (endpoint_id, event_id, order_id, sequence, give_up_at)
    SELECT w.id, ev.id, ev.order_id, ev.sequence, now() + make_interval(secs => :retry_for_s)
    FROM order_events ev
    JOIN webhook_endpoints w ON w.client_id = ev.client_id AND w.enabled AND w.created_at <= ev.created_at
                            AND (cardinality(w.event_types) = 0 OR ev.type = ANY(w.event_types))
    WHERE ev.id = ANY(:event_ids)
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id""")


def fan_out(connection: Connection, batch: int, retry_for_s: float) -> tuple[int, list[uuid.UUID]]:
    """Turn up to `batch` committed events past the cursor into deliveries and move the cursor past them.

    Answers (events read, new delivery ids): send the deliveries after the commit.
    """
    connection.execute(
        text("INSERT INTO webhook_fanout (id, transaction_id, event_id) VALUES (1, 0, :start) ON CONFLICT DO NOTHING"),
        {"start": START[1]},
    )
    position = connection.execute(
        text("SELECT transaction_id, event_id FROM webhook_fanout WHERE id = 1 FOR UPDATE")
    ).one()
    events = committed_after(connection, client_id=None, after=(position[0], position[1]), limit=batch)
    if not events:
        return 0, []
    created = connection.scalars(FAN_OUT, {"event_ids": [event.id for event in events], "retry_for_s": retry_for_s})
    delivery_ids = list(created)
    last = events[-1]
    connection.execute(
        text("UPDATE webhook_fanout SET transaction_id = :tx, event_id = :id, updated_at = now() WHERE id = 1"),
        {"tx": last.transaction_id, "id": last.id},
    )
    return len(events), delivery_ids


def redrive_due(connection: Connection, idle_s: float, limit: int) -> list[uuid.UUID]:
    """Pending deliveries, first in their line, due for idle_s with nobody sending: their message was lost."""
    return list(
        connection.scalars(
            text(f"""UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id IN (
                         SELECT d.id FROM webhook_deliveries d
                         JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled
                         WHERE d.status = 'pending' AND d.next_attempt_at < now() - make_interval(secs => :idle_s)
                           AND (d.claimed_until IS NULL OR d.claimed_until < now()) AND NOT {EARLIER_PENDING}
                         ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED)
                     RETURNING id"""),
            {"idle_s": idle_s, "limit": limit},
        )
    )


def redeliver_event(connection: Connection, event_id: uuid.UUID, retry_for_s: float) -> list[uuid.UUID]:
    """Make every delivery of the event to an enabled endpoint pending again (same event id, so same webhook-id)."""
    return list(
        connection.scalars(
            text("""UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), claimed_until = NULL,
                        give_up_at = now() + make_interval(secs => :retry_for_s), updated_at = now()
                    WHERE event_id = :id AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled)
                    RETURNING id"""),
            {"id": event_id, "retry_for_s": retry_for_s},
        )
    )


# ---- one delivery: claim, then settle ------------------------------------------------------------------

CLAIM = text(f"""
    SELECT d.id, d.status, d.endpoint_id, d.order_id, d.sequence, d.attempts, w.url, w.secret, w.enabled,
           ev.id AS event_id, ev.type, ev.payload,
           d.next_attempt_at > now() + interval '1 second' AS early,
           COALESCE(d.claimed_until > now(), false) AS claimed, {EARLIER_PENDING} AS waiting
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.id = d.endpoint_id
    JOIN order_events ev ON ev.id = d.event_id
    WHERE d.id = :id
    FOR UPDATE OF d SKIP LOCKED""")


@dataclass(frozen=True)
class Claim:
    """A delivery this worker may send now, with what it needs to send it."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    order_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    url: str
    secret: str
    payload: dict[str, Any]
    attempts: int  # made before this one


def claim(connection: Connection, delivery_id: uuid.UUID, hold_s: float) -> Claim | str:
    """Take the delivery for hold_s if it is due and first in its line; otherwise why not (a word for the logs)."""
    row = connection.execute(CLAIM, {"id": delivery_id}).one_or_none()
    if row is None:
        return "busy_or_gone"
    if row.status != "pending":
        return row.status  # type: ignore[no-any-return]
    if not row.enabled:
        _skip_pending(connection, row.endpoint_id, "endpoint disabled")
        return "endpoint_disabled"
    if row.claimed or row.early or row.waiting:
        return "claimed" if row.claimed else "early" if row.early else "waiting"
    connection.execute(
        text("UPDATE webhook_deliveries SET claimed_until = now() + make_interval(secs => :s) WHERE id = :id"),
        {"id": delivery_id, "s": hold_s},
    )
    return Claim(
        row.id, row.endpoint_id, row.order_id, row.event_id, row.type, row.url, row.secret, row.payload, row.attempts
    )


def release(connection: Connection, delivery_id: uuid.UUID) -> None:
    """Give a claim back without an attempt (its worker could not record one)."""
    connection.execute(text("UPDATE webhook_deliveries SET claimed_until = NULL WHERE id = :id"), {"id": delivery_id})


@dataclass(frozen=True)
class Settled:
    """What an attempt left behind: the delivery's status, when to try again, and whether the endpoint was disabled."""

    status: str
    attempt: int
    retry_in_s: float | None
    endpoint_disabled: bool
    next_in_line: uuid.UUID | None


def settle(
    connection: Connection,
    claimed: Claim,
    *,
    started_at: Any,
    latency_ms: int,
    response_code: int | None,
    error: str | None,
    delivered: bool,
    retry_in_s: float,
    disable_after_s: float,
) -> Settled:
    """Record the attempt and move the delivery (and its endpoint's failing clock) on; endpoint first, then delivery."""
    disabled = False
    if delivered:
        connection.execute(
            text("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = :id AND failing_since IS NOT NULL"),
            {"id": claimed.endpoint_id},
        )
    else:
        overdue = connection.scalar(
            text("""UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, now()) WHERE id = :id
                    RETURNING enabled AND now() - failing_since >= make_interval(secs => :after)"""),
            {"id": claimed.endpoint_id, "after": disable_after_s},
        )
        if overdue:
            reason = f"every delivery failed for {disable_after_s:g} s; last: {error or response_code}"[:200]
            connection.execute(
                text(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = :why, updated_at = now() "
                    "WHERE id = :id"
                ),
                {"id": claimed.endpoint_id, "why": reason},
            )
            disabled = True
    moved = connection.execute(
        text("""UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_until = NULL, updated_at = now(),
                    last_response_code = :code, last_error = :error,
                    status = CASE WHEN :delivered THEN 'delivered'
                                  WHEN status = 'pending' AND now() + make_interval(secs => :retry_in_s) > give_up_at
                                  THEN 'failed' ELSE status END,
                    delivered_at = CASE WHEN :delivered THEN now() ELSE delivered_at END,
                    next_attempt_at = CASE WHEN :delivered THEN next_attempt_at
                                           ELSE now() + make_interval(secs => :retry_in_s) END
                WHERE id = :id RETURNING attempts, status"""),
        {
            "id": claimed.delivery_id,
            "code": response_code,
            "error": error,
            "delivered": delivered,
            "retry_in_s": retry_in_s,
        },
    ).one()
    connection.execute(
        text("""INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, response_code, error)
                VALUES (:id, :attempt, :started_at, :latency_ms, :code, :error)"""),
        {
            "id": claimed.delivery_id,
            "attempt": moved.attempts,
            "started_at": started_at,
            "latency_ms": latency_ms,
            "code": response_code,
            "error": error,
        },
    )
    if disabled:
        _skip_pending(connection, claimed.endpoint_id, "endpoint disabled")
    status = "skipped" if disabled and moved.status == "pending" else moved.status
    following = None
    if status != "pending":
        following = connection.scalar(
            text("""SELECT id FROM webhook_deliveries WHERE endpoint_id = :endpoint AND order_id = :order
                      AND status = 'pending' ORDER BY sequence LIMIT 1"""),
            {"endpoint": claimed.endpoint_id, "order": claimed.order_id},
        )
    retry = retry_in_s if status == "pending" else None
    return Settled(status, moved.attempts, retry, disabled, following)

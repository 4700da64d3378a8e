"""The webhook endpoints API's documents (camelCase on the wire): create, update, out, and deliveries with attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from models.schemas import InDocument, OutDocument

# The order event types (pipeline.order_events.EVENT_TYPES; tests/unit/test_webhook_schemas.py keeps them equal).
EventType = Literal[
    "order.accepted",
    "order.reserved",
    "order.paid",
    "order.confirmed",
    "order.notified",
    "order.shipped",
    "order.cancelling",
    "order.cancelled",
    "order.needs_attention",
    "order.refunded",
    "order.disputed",
]
URL_DESCRIPTION = (
    "Absolute https URL (http only where the operator allows it) whose host resolves to public addresses only."
)
Url = Field(min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+$", description=URL_DESCRIPTION)
EVENT_TYPES_DESCRIPTION = "The event types to receive; empty (the default) means every type."


class WebhookEndpointCreate(InDocument):
    """A new endpoint: where to POST, and which events."""

    url: str = Url
    event_types: list[EventType] = Field(default=[], max_length=20, description=EVENT_TYPES_DESCRIPTION)


class WebhookEndpointUpdate(InDocument):
    """What to change on an endpoint; an absent field stays as it is. `enabled: true` clears a disable."""

    url: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+$")
    event_types: list[EventType] | None = Field(default=None, max_length=20, description=EVENT_TYPES_DESCRIPTION)
    enabled: bool | None = None


class WebhookEndpointOut(OutDocument):
    """An endpoint as its client sees it (never its secret)."""

    id: uuid.UUID
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None = Field(description="Why it is disabled: by its client, or for failing too long.")
    failing_since: datetime | None = Field(description="Since when every attempt has failed; null when healthy.")
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointOut):
    """An endpoint just created or given a new secret: the signing secret is shown this once."""

    secret: str = Field(description="Standard Webhooks signing secret (whsec_...): store it, it is not shown again.")


class WebhookAttemptOut(OutDocument):
    """One POST of a delivery."""

    attempt: int
    started_at: datetime
    latency_ms: int | None
    response_code: int | None
    error: str | None


class WebhookDeliveryOut(OutDocument):
    """One event owed to the endpoint, where it stands, and every attempt so far."""

    id: uuid.UUID
    event_id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    event_type: str
    order_id: uuid.UUID
    sequence: int
    status: Literal["pending", "delivered", "failed", "skipped"]
    next_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[WebhookAttemptOut]

"""/v1/webhook-endpoints: a shop registers URLs that receive its orders' events, signed (Standard Webhooks).

An endpoint belongs to the client that created it: another client's answers 404 exactly like one that does not
exist, and `admin` sees and changes all. The signing secret is shown twice only: in the answer that created
it and in the one that rotated it. Every write is `pipeline.webhook_store`'s; the URL is checked by
`pipeline.url_guard` here and again before every delivery.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import RowMapping, text

from api.auth import Client
from api.deps import DatabaseUrl, Limit, Reader, SettingsDep, Writer
from api.errors import ApiError
from api.openapi_docs import WITH_BODY, Responses, error
from api.pagination import Cursor, NoOffset, decode_cursor, invalid_cursor, page
from api.views import wire_time
from models.db import engine_for, transaction
from models.schemas import Page
from models.webhook_schemas import (
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from pipeline import url_guard, webhook_store
from pipeline.config import Settings

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
NOT_FOUND: Responses = {404: error("WEBHOOK_ENDPOINT_NOT_FOUND: no such endpoint, or another client's")}
BAD_URL: Responses = {422: error("VALIDATION_ERROR, or INVALID_WEBHOOK_URL: not https, or not a public address")}
COLUMNS = webhook_store.ENDPOINT_COLUMNS
OWNED = "(CAST(:owner AS text) IS NULL OR client_id = :owner)"


def owner_of(client: Client) -> str | None:
    """The client whose endpoints a caller may see and change: itself, or None (all) for `admin`."""
    return None if client.may("admin") else client.id


def checked_url(url: str, settings: Settings) -> str:
    try:
        url_guard.check(url, allow_http=settings.webhook_allow_http, allowed_hosts=settings.webhook_allowed_hosts)
    except url_guard.UnsafeUrl as refused:
        raise ApiError(422, "INVALID_WEBHOOK_URL", str(refused), {"url": url}) from None
    return url


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses={**WITH_BODY, **BAD_URL},
    summary="Register a webhook endpoint (the answer shows its secret, once)",
)
def create_webhook_endpoint(
    body: WebhookEndpointCreate, client: Writer, settings: SettingsDep, database_url: DatabaseUrl, response: Response
) -> WebhookEndpointWithSecret:
    """Register a URL for the client's order events; 422 INVALID_WEBHOOK_URL for a URL we would not call."""
    url = checked_url(body.url, settings)
    with transaction(database_url) as connection:
        row = webhook_store.create_endpoint(connection, client.id, url, list(dict.fromkeys(body.event_types)))
    response.headers["Location"] = f"{router.prefix}/{row['id']}"
    return WebhookEndpointWithSecret(**row)


@router.get("", response_model=Page[WebhookEndpointOut], summary="List the client's webhook endpoints, newest first")
def list_webhook_endpoints(
    request: Request, client: Reader, database_url: DatabaseUrl, _: NoOffset, limit: Limit = 20, cursor: Cursor = None
) -> JSONResponse:
    """A page of the client's endpoints (admin: everyone's), newest first, ties by id."""
    after = position(cursor) if cursor is not None else None
    query = f"SELECT {COLUMNS} FROM webhook_endpoints WHERE {OWNED}"
    if after is not None:
        query += " AND (created_at, id) < (:after_at, :after_id)"
    params = {"owner": owner_of(client), "rows": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after  # type: ignore[assignment]
    with engine_for(database_url).connect() as connection:
        rows = [
            row._mapping
            for row in connection.execute(text(query + " ORDER BY created_at DESC, id DESC LIMIT :rows"), params)
        ]
    return page(request, rows, limit, lambda row: (row["created_at"].isoformat(), str(row["id"])), endpoint_document)


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut, responses=NOT_FOUND, summary="One webhook endpoint")
def get_webhook_endpoint(endpoint_id: uuid.UUID, client: Reader, database_url: DatabaseUrl) -> WebhookEndpointOut:
    """The endpoint, its event types and whether it is enabled (never its secret)."""
    return WebhookEndpointOut(**load(database_url, endpoint_id, client))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses={**WITH_BODY, **NOT_FOUND, **BAD_URL},
    summary="Change a webhook endpoint's URL or event types, or disable or enable it",
)
def update_webhook_endpoint(
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    client: Writer,
    settings: SettingsDep,
    database_url: DatabaseUrl,
) -> WebhookEndpointOut:
    """Change what the body names; `enabled: false` skips what is still pending, `enabled: true` clears a disable."""
    url = checked_url(body.url, settings) if body.url is not None else None
    types = list[str](dict.fromkeys(body.event_types)) if body.event_types is not None else None
    with transaction(database_url) as connection:
        row = webhook_store.update_endpoint(
            connection, endpoint_id, owner_of(client), url=url, event_types=types, enabled=body.enabled
        )
    if row is None:
        raise not_found(endpoint_id)
    return WebhookEndpointOut(**row)


@router.delete("/{endpoint_id}", status_code=204, responses=NOT_FOUND, summary="Delete a webhook endpoint")
def delete_webhook_endpoint(endpoint_id: uuid.UUID, client: Writer, database_url: DatabaseUrl) -> Response:
    """Delete the endpoint with its deliveries; nothing more is sent to it."""
    with transaction(database_url) as connection:
        if not webhook_store.delete_endpoint(connection, endpoint_id, owner_of(client)):
            raise not_found(endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointWithSecret,
    responses=NOT_FOUND,
    summary="Give a webhook endpoint a new signing secret (shown once; the old one stops signing)",
)
def rotate_webhook_secret(
    endpoint_id: uuid.UUID, client: Writer, database_url: DatabaseUrl
) -> WebhookEndpointWithSecret:
    """A new secret signs every attempt from now on, retries of earlier events included."""
    with transaction(database_url) as connection:
        row = webhook_store.rotate_secret(connection, endpoint_id, owner_of(client))
    if row is None:
        raise not_found(endpoint_id)
    return WebhookEndpointWithSecret(**row)


DELIVERIES = """
    SELECT d.id, d.event_id, ev.type AS event_type, d.order_id, d.sequence, d.status, d.next_attempt_at,
           d.last_response_code, d.last_error, d.delivered_at, d.created_at,
           COALESCE((SELECT json_agg(json_build_object('attempt', a.attempt, 'startedAt', a.started_at,
                                                       'latencyMs', a.latency_ms, 'responseCode', a.response_code,
                                                       'error', a.error) ORDER BY a.attempt)
                     FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts
    FROM webhook_deliveries d JOIN order_events ev ON ev.id = d.event_id
    WHERE d.endpoint_id = :endpoint {after}
    ORDER BY d.created_at DESC, d.id DESC LIMIT :rows"""


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[WebhookDeliveryOut],
    responses=NOT_FOUND,
    summary="The endpoint's recent deliveries with their attempts, newest first",
)
def list_webhook_deliveries(
    request: Request,
    endpoint_id: uuid.UUID,
    client: Reader,
    database_url: DatabaseUrl,
    _: NoOffset,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONResponse:
    """Each event owed to the endpoint: its status, response codes, latencies and errors, attempt by attempt."""
    load(database_url, endpoint_id, client)
    after = position(cursor) if cursor is not None else None
    params: dict[str, Any] = {"endpoint": endpoint_id, "rows": limit + 1}
    condition = ""
    if after is not None:
        condition = "AND (d.created_at, d.id) < (:after_at, :after_id)"
        params["after_at"], params["after_id"] = after
    with engine_for(database_url).connect() as connection:
        rows = [row._mapping for row in connection.execute(text(DELIVERIES.format(after=condition)), params)]
    return page(request, rows, limit, lambda row: (row["created_at"].isoformat(), str(row["id"])), delivery_document)


def load(database_url: str, endpoint_id: uuid.UUID, client: Client) -> RowMapping:
    with engine_for(database_url).connect() as connection:
        row = connection.execute(
            text(f"SELECT {COLUMNS} FROM webhook_endpoints WHERE id = :id AND {OWNED}"),
            {"id": endpoint_id, "owner": owner_of(client)},
        ).one_or_none()
    if row is None:
        raise not_found(endpoint_id)
    return row._mapping


def position(cursor: str) -> tuple[datetime, uuid.UUID]:
    created_at, row_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except ValueError:
        raise invalid_cursor() from None


def endpoint_document(row: RowMapping) -> dict[str, Any]:
    return WebhookEndpointOut(**row).model_dump(mode="json")


def delivery_document(row: RowMapping) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "eventId": str(row["event_id"]),
        "eventType": row["event_type"],
        "orderId": str(row["order_id"]),
        "sequence": row["sequence"],
        "status": row["status"],
        "nextAttemptAt": wire_time(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "lastResponseCode": row["last_response_code"],
        "lastError": row["last_error"],
        "deliveredAt": wire_time(row["delivered_at"]) if row["delivered_at"] else None,
        "createdAt": wire_time(row["created_at"]),
        "attempts": row["attempts"],
    }


def not_found(endpoint_id: uuid.UUID) -> ApiError:
    return ApiError(
        404, "WEBHOOK_ENDPOINT_NOT_FOUND", f"no webhook endpoint {endpoint_id}", {"endpointId": str(endpoint_id)}
    )

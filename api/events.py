"""GET /v1/events: the client's order events, oldest first, for shops that cannot receive webhooks.

Modelled on Stripe's /v1/events: follow `nextCursor` to read on, and keep the last one to poll for what
happens later. The cursor names a position in commit-safe order (see pipeline.order_events), so a reader
that polls from it never misses an event, even one whose transaction started before and committed after.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import Field

from api.deps import DatabaseUrl, Limit, Reader
from api.orders import owner_of_visible
from api.pagination import Cursor, NoOffset, decode_cursor, encode_cursor, invalid_cursor
from models.db import transaction
from models.schemas import OrderEventOut, OutDocument
from pipeline import order_events

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventPage(OutDocument):
    """Events oldest first; `nextCursor` is where to read on (also when `hasMore` is false: poll from it)."""

    data: list[OrderEventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to read on; null only when no event was seen yet.")
    has_more: bool = Field(description="True when more events are ready now; otherwise poll from nextCursor later.")


@router.get("", response_model=EventPage, summary="The client's order events, oldest first")
def list_events(
    client: Reader, database_url: DatabaseUrl, _: NoOffset, limit: Limit = 20, cursor: Cursor = None
) -> JSONResponse:
    """A page of the events of the client's orders (every client's for `admin`), after `cursor`."""
    after = position(cursor) if cursor else None
    with transaction(database_url) as connection:
        rows = order_events.committed_after(
            connection, client_id=owner_of_visible(client), after=after, limit=limit + 1
        )
    shown = rows[:limit]
    last = (shown[-1].transaction_id, shown[-1].id) if shown else after
    following = encode_cursor([str(last[0]), str(last[1])]) if last else None
    body: dict[str, Any] = {
        "data": [row.payload for row in shown],
        "nextCursor": following,
        "hasMore": len(rows) > limit,
    }
    return JSONResponse(body)


def position(cursor: str) -> tuple[int, uuid.UUID]:
    """The (transaction id, event id) a cursor of this feed names."""
    transaction_id, event_id = decode_cursor(cursor, 2)
    try:
        return int(transaction_id), uuid.UUID(event_id)
    except ValueError:
        raise invalid_cursor() from None


def document_webhooks(app: FastAPI) -> None:
    """Describe the requests we send to a shop's endpoints in the schema's `webhooks` (OpenAPI 3.1)."""

    @app.webhooks.post("order-event", summary="An order event, sent to each matching endpoint of the order's client")
    def order_event(body: OrderEventOut) -> None:
        """Signed with Standard Webhooks: verify the `webhook-id`, `webhook-timestamp` and `webhook-signature`
        headers with the endpoint's secret (e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`) before
        trusting the body. Answer 2xx within the timeout; anything else is retried with backoff. The same event is
        sent again with the same `webhook-id`, so drop ids already seen; put one order's events in order by
        `sequence`.
        """

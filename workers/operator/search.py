"""Find orders across every client for the operator console: filters, a sort by age, keyset pages.

Each filter is a fixed fragment and every value a parameter. Every combination walks one of the orders indexes
(`created_at`, `terminal_status, created_at`, `client_id, [terminal_status,] created_at`, `user_id,
created_at`) in its order, so page 1,000 costs what page 1 costs, however many orders the table holds. A live
status is a filter on the live orders, which are few.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from models.db import engine_for
from models.orders import status_condition

PAGE_ROWS = 50
CONDITIONS = {
    "client_id": "o.client_id = :client_id",
    "user_id": "o.user_id = :user_id",
    "order_id": "o.id = :order_id",
    "since": "o.created_at >= :since",
    "until": "o.created_at < :until",
    # A cancel reason, or the error code inside the last error ("step: CODE: message").
    "code": "(o.cancel_reason = :code OR o.last_error LIKE '%' || :code || '%')",
}
AFTER = {
    "newest": "(o.created_at, o.id) < (:after_at, :after_id)",
    "oldest": "(o.created_at, o.id) > (:after_at, :after_id)",
}
ORDER_BY = {"newest": "o.created_at DESC, o.id DESC", "oldest": "o.created_at, o.id"}
SELECT = """
SELECT o.id, o.client_id, o.user_id, o.status, o.current_step, o.total_cents, o.currency, o.cancel_reason,
       o.last_error, o.created_at, o.updated_at
FROM orders AS o WHERE {conditions} ORDER BY {order} LIMIT :rows
"""


@dataclass(frozen=True)
class OrderFilter:
    """What the operator asked for; None is "any". `text` is an order id or a user id."""

    status: str | None = None
    client_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    code: str | None = None
    text: str | None = None
    sort: str = "newest"


def search_orders(
    database_url: str, wanted: OrderFilter, after: tuple[datetime, uuid.UUID] | None = None, rows: int = PAGE_ROWS
) -> list[dict[str, Any]]:
    """Up to `rows` + 1 orders matching `wanted`, after a position, in `wanted.sort` order (the extra row says
    whether another page follows)."""
    params: dict[str, Any] = {
        "status": wanted.status,
        "client_id": wanted.client_id,
        "since": wanted.since,
        "until": wanted.until,
        "code": wanted.code,
        "rows": rows + 1,
        "user_id": None,
        "order_id": None,
    }
    if wanted.text:
        as_id = _uuid(wanted.text)
        params["order_id" if as_id else "user_id"] = as_id or wanted.text
    chosen = [fragment for name, fragment in CONDITIONS.items() if params[name] is not None]
    if wanted.status is not None:
        chosen.append(status_condition(wanted.status, ":status"))
    if after is not None:
        params["after_at"], params["after_id"] = after
        chosen.append(AFTER[wanted.sort])
    query = SELECT.format(conditions=" AND ".join(chosen) or "true", order=ORDER_BY[wanted.sort])
    with engine_for(database_url).connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(query), params)]


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None

"""The console's pages that only read: the overview, the order list, one order, the stuck and parked orders.

Every number comes from the same functions `orderctl stats`, `stuck` and `show` use (workers.operator).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.chart import HEIGHT, WIDTH, stacked_bars
from api.console.web import PREFIX, ConsoleError, SignedIn, render
from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from models.status import TERMINAL_VALUES, OrderStatus
from workers.backlog import backlog
from workers.operator import views
from workers.operator.dead_letters import dead_letters
from workers.operator.search import PAGE_ROWS, OrderFilter, search_orders

router = APIRouter(prefix=PREFIX, include_in_schema=False)
STUCK_AFTER_S = 300.0  # no progress for 5 minutes counts as stuck, as `orderctl stuck` says by default
STUCK_ROWS = 200
CHART_MINUTES = 60
MAX_FILTER_CHARS = 100


@router.get("")
def overview(request: Request, operator: SignedIn) -> Response:
    """Orders per open state, terminal orders per minute, queues, stuck and parked orders, failing endpoints."""
    database_url = request.app.state.database_url
    per_minute = views.throughput(database_url, CHART_MINUTES)
    bars, tallest = stacked_bars(per_minute, TERMINAL_VALUES)
    # Only the stalled live orders are counted here: the parked ones come with the open counts.
    stalled = views.stalled(database_url, STUCK_AFTER_S, STUCK_ROWS)
    context: dict[str, Any] = {
        "open": views.open_counts(database_url),
        "finished": {status: sum(row[status] for row in per_minute) for status in TERMINAL_VALUES},
        "bars": bars,
        "tallest": tallest,
        "chart": {"width": WIDTH, "height": HEIGHT, "minutes": CHART_MINUTES},
        "stuck": len(stalled),
        "capped": STUCK_ROWS,
        "endpoints": views.failing_endpoints(database_url),
    }
    try:
        context["queues"] = list(backlog(request.app.state.redis).values())
    except redis.RedisError as error:
        context["queues"], context["redis_error"] = [], type(error).__name__
    # htmx refreshes only the overview's body every few seconds; a plain GET gets the whole page.
    template = "overview_body.html" if request.headers.get("HX-Request") else "overview.html"
    return render(request, template, operator, **context)


@router.get("/orders")
def orders(request: Request, operator: SignedIn) -> Response:
    """Orders across every client, filtered, newest or oldest first, one keyset page at a time."""
    query = request.query_params
    wanted = order_filter(dict(query))
    after = None
    if cursor := query.get("cursor"):
        try:
            at, order_id = decode_cursor(cursor, 2)
            after = (datetime.fromisoformat(at), uuid.UUID(order_id))
        except (ApiError, ValueError):
            raise ConsoleError(400, "that page link is not one the console made; start again from page 1") from None
    rows = search_orders(request.app.state.database_url, wanted, after)
    shown, following = rows[:PAGE_ROWS], None
    if len(rows) > PAGE_ROWS:  # the query read one row more than a page: another page follows
        last = shown[-1]
        position = encode_cursor([last["created_at"].isoformat(), str(last["id"])])
        url = request.url.include_query_params(cursor=position)
        following = f"{url.path}?{url.query}"
    filters = {key: value for key, value in query.items() if key != "cursor"}
    return render(
        request,
        "orders.html",
        operator,
        rows=shown,
        following=following,
        filters=filters,
        statuses=[status.value for status in OrderStatus],
        first_page=after is None,
    )


def order_filter(query: dict[str, str]) -> OrderFilter:
    """The list's filters from the query string; a value the console cannot use is a 400 page, not a guess."""
    for key, value in query.items():
        if len(value) > MAX_FILTER_CHARS and key != "cursor":
            raise ConsoleError(400, f"the {key} filter is longer than {MAX_FILTER_CHARS} characters")
    status = query.get("status") or None
    if status is not None and status not in {s.value for s in OrderStatus}:
        raise ConsoleError(400, f"no order status {status!r}")
    sort = query.get("sort") or "newest"
    if sort not in ("newest", "oldest"):
        raise ConsoleError(400, "sort is newest or oldest")
    return OrderFilter(
        status=status,
        client_id=(query.get("client") or "").strip() or None,
        since=moment(query.get("since"), "since"),
        until=moment(query.get("until"), "until"),
        code=(query.get("code") or "").strip() or None,
        text=(query.get("q") or "").strip() or None,
        sort=sort,
    )


def moment(value: str | None, name: str) -> datetime | None:
    """A time from the filter form (`2026-12-02T10:30`, UTC unless it names a zone)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConsoleError(400, f"{name} is not a date and time like 2026-12-02T10:30") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/orders/{order_id}")
def order(request: Request, order_id: str, operator: SignedIn) -> Response:
    """One order: lines, totals, the payment ledger, the shipment, the timeline, the events sent to the shop."""
    try:
        parsed = uuid.UUID(order_id)
    except ValueError:
        raise ConsoleError(400, f"not an order id: {order_id!r}") from None
    story = views.order_story(request.app.state.database_url, parsed)
    if story is None:
        raise ConsoleError(404, f"no order {parsed}")
    settings = request.app.state.settings
    return render(
        request,
        "order.html",
        operator,
        story=story,
        history=history(story),
        live=story["order"]["status"] not in TERMINAL_VALUES,
        stripe_dashboard=stripe_dashboard(settings.stripe_api_base, settings.stripe_api_key.get_secret_value()),
    )


def history(story: dict[str, Any]) -> list[dict[str, Any]]:
    """The timeline as the order lived it: each entry with its offset from the order's creation."""
    created = datetime.fromisoformat(story["order"]["created_at"])
    entries = []
    for step in story["timeline"]:
        started = datetime.fromisoformat(step["started_at"])
        entries.append(step | {"offset_s": (started - created).total_seconds()})
    return entries


def stripe_dashboard(api_base: str | None, api_key: str) -> str | None:
    """Where a payment intent opens in Stripe's dashboard; None on the loopback Stripe, which has no dashboard."""
    if api_base is not None:
        return None
    return (
        "https://dashboard.stripe.com/test"
        if api_key.startswith(("sk_test", "rk_test"))
        else "https://dashboard.stripe.com"
    )


@router.get("/stuck")
def stuck(request: Request, operator: SignedIn) -> Response:
    """What `orderctl stuck` and `orderctl dlq list` show, with the actions an operator takes on them."""
    idle_min = request.query_params.get("older_than_min", "5")
    try:
        idle_s = float(idle_min) * 60
    except ValueError:
        raise ConsoleError(400, "older_than_min is a number of minutes") from None
    if not 0 < idle_s <= 7 * 86400:
        raise ConsoleError(400, "older_than_min is between 0 and 10080 (a week)")
    found = views.stuck(request.app.state.database_url, idle_s, STUCK_ROWS)
    try:
        letters, redis_error = dead_letters(request.app.state.redis), None
    except redis.RedisError as error:
        letters, redis_error = [], type(error).__name__
    return render(
        request,
        "stuck.html",
        operator,
        stuck=found["stuck"],
        needs_attention=found["needs_attention"],
        letters=letters,
        redis_error=redis_error,
        older_than_min=idle_min,
        capped=STUCK_ROWS,
    )

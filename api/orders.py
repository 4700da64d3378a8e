"""/v1/orders: place an order (idempotent), read one with its timeline, list them, cancel one.

An order belongs to the client that placed it (the token's `sub`): another client's order answers 404, exactly
as an order that does not exist, so ids cannot be probed. `admin` sees and cancels every order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import Client
from api.database import read_within
from api.deadline import place_in_time
from api.deps import DatabaseUrl, Enqueue, IdempotencyKey, IntakePool, Limit, Reader, SettingsDep, Writer
from api.intake import check_limits
from api.openapi_docs import WITH_BODY, Responses, error
from api.order_list import order_document, order_rows
from api.pagination import Cursor, NoOffset, decode_cursor, invalid_cursor, page
from api.views import order_detail
from models.db import unit_of_work
from models.orders import Order
from models.saga import SagaStep
from models.schemas import PLAIN_TEXT_PATTERN, OrderCreate, OrderDetail, OrderOut, Page
from models.status import OrderStatus
from pipeline.errors import OrderNotFound
from pipeline.logs import get_logger
from workers.saga import cancel

log = get_logger(__name__)
router = APIRouter(prefix="/v1/orders", tags=["orders"])
REPLAY = {"model": OrderOut, "description": "A replay: this Idempotency-Key already placed this order."}
UserFilter = Annotated[str | None, Query(alias="userId", max_length=64, pattern=PLAIN_TEXT_PATTERN)]
NOT_FOUND: Responses = {404: error("ORDER_NOT_FOUND: no such order, or another client's")}
UNPLACEABLE = error(
    "VALIDATION_ERROR, PRODUCT_NOT_FOUND, CURRENCY_MISMATCH, PRICE_MISMATCH, or AMOUNT_TOO_SMALL: the"
    " catalogue-priced total is under the payment provider's minimum charge for the currency (details: minimumAmount,"
    " currency, totalAmount, in minor units)"
)


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses={
        **WITH_BODY,
        200: REPLAY,
        400: error("MALFORMED_JSON, or IDEMPOTENCY_KEY_REQUIRED: the Idempotency-Key header is missing"),
        409: error("IDEMPOTENCY_KEY_REUSED: this key placed an order with a different body"),
        422: UNPLACEABLE,
    },
    summary="Place an order (requires Idempotency-Key)",
)
async def create_order(
    request: Request,
    client: Writer,
    key: IdempotencyKey,
    body: OrderCreate,
    settings: SettingsDep,
    pool: IntakePool,
    enqueue: Enqueue,
) -> JSONResponse:
    """Price the order from the catalogue, write it as pending, start its saga; a repeated key replays."""
    check_limits(body, settings)

    async def start(order_id: uuid.UUID) -> None:
        # Dramatiq's broker is synchronous: its Redis round trip runs on a worker thread, off the event loop.
        await run_in_threadpool(start_saga, enqueue, order_id)

    # 503 NOT_READY if Postgres hangs past the budget; an order that transaction writes later is started then.
    placed = await place_in_time(pool, client.id, key, body, settings, request.app.state.metrics, start)
    headers = {"Location": f"/v1/orders/{placed.order_id}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        request.app.state.metrics.orders_accepted.inc()
        await start(placed.order_id)
    return JSONResponse(placed.body, status_code=placed.status, headers=headers)


def start_saga(enqueue: Callable[[str], None], order_id: uuid.UUID) -> None:
    """Hand the committed order to the saga; if the broker is down the order's lease brings it back later."""
    try:
        enqueue(str(order_id))
    except Exception as error:  # any failure here is recovered by the lease sweep, so the client still gets 201
        log.warning("saga_enqueue_failed", order_id=str(order_id), error=repr(error))


@router.get("/{order_id}", response_model=OrderDetail, responses=NOT_FOUND, summary="An order and its timeline")
def get_order(order_id: uuid.UUID, client: Reader, database_url: DatabaseUrl) -> OrderDetail:
    """The order with its status, cancel reason, last error and every saga step attempt."""
    with unit_of_work(database_url) as session:
        return load_detail(session, order_id, client)


@router.get("", response_model=Page[OrderOut], summary="List orders, newest first")
async def list_orders(
    request: Request,
    client: Reader,
    pool: IntakePool,
    settings: SettingsDep,
    _: NoOffset,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: OrderStatus | None = None,
    user_id: UserFilter = None,
) -> JSONResponse:
    """A page of the client's orders (newest first, ties by id), optionally of one status and/or one user."""
    reading = order_rows(
        pool,
        limit + 1,
        client_id=owner_of_visible(client),
        status=status,
        user_id=user_id,
        after=order_position(cursor) if cursor is not None else None,
    )
    rows = await read_within(reading, settings.intake_db_budget_s)
    return page(request, rows, limit, lambda row: (row["created_at"].isoformat(), str(row["id"])), order_document)


def owner_of_visible(client: Client) -> str | None:
    """The owner whose orders a client may see: itself, or None (every client's) for `admin`."""
    return None if client.may("admin") else client.id


def visible_to(client: Client) -> list[ColumnElement[bool]]:
    """The orders a client may see, as a filter on orders."""
    owner = owner_of_visible(client)
    return [] if owner is None else [Order.client_id == owner]


def order_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor of this list names."""
    created_at, order_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(created_at), uuid.UUID(order_id)
    except ValueError:
        raise invalid_cursor() from None


@router.post(
    "/{order_id}/cancel",
    status_code=202,
    response_model=OrderDetail,
    responses={**NOT_FOUND, 409: error("ORDER_ALREADY_SHIPPED")},
    summary="Cancel an order that has not shipped",
)
def cancel_order(order_id: uuid.UUID, client: Writer, database_url: DatabaseUrl) -> OrderDetail:
    """Start the saga's compensations for the client's order (repeatable); 202 with the order as it now stands."""
    with unit_of_work(database_url) as session:
        load_detail(session, order_id, client)  # 404 unless the client may see it (an owner never changes)
    cancel.cancel_order(database_url, order_id)
    with unit_of_work(database_url) as session:
        return load_detail(session, order_id, client)


def load_detail(session: Session, order_id: uuid.UUID, client: Client) -> OrderDetail:
    order = session.scalars(select(Order).where(Order.id == order_id, *visible_to(client))).one_or_none()
    if order is None:
        raise OrderNotFound(f"no order {order_id}", orderId=str(order_id))
    steps = session.scalars(
        select(SagaStep).where(SagaStep.order_id == order_id).order_by(SagaStep.started_at, SagaStep.id)
    ).all()
    return order_detail(order, steps)

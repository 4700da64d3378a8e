"""/v1/orders: place an order (idempotent), read one with its timeline, list them, cancel one.

Reads are not scoped to the calling client: any token with `orders:read` sees every order. Orders carry no
client column yet; per-client visibility would add one (and a filter here).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    Admin,
    DatabaseUrl,
    Enqueue,
    IdempotencyKey,
    IntakePool,
    Limit,
    Offset,
    Reader,
    SettingsDep,
    Writer,
)
from api.intake import check_limits, place_order
from api.views import order_detail, order_out
from models.db import unit_of_work
from models.orders import Order
from models.saga import SagaStep
from models.schemas import PLAIN_TEXT_PATTERN, ErrorBody, OrderCreate, OrderDetail, OrderOut, Page, PageMeta
from models.status import OrderStatus
from pipeline.errors import OrderNotFound
from pipeline.logs import get_logger
from workers.dispatch import cancel_order

log = get_logger(__name__)
router = APIRouter(prefix="/v1/orders", tags=["orders"])
REPLAY = {"model": OrderOut, "description": "A replay: this Idempotency-Key already placed this order."}
UserFilter = Annotated[str | None, Query(alias="userId", max_length=64, pattern=PLAIN_TEXT_PATTERN)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "ORDER_NOT_FOUND"}}
UNPLACEABLE = {
    "model": ErrorBody,
    "description": "VALIDATION_ERROR, PRODUCT_NOT_FOUND, CURRENCY_MISMATCH, PRICE_MISMATCH, or AMOUNT_TOO_SMALL: the"
    " catalogue-priced total is under the payment provider's minimum charge for the currency (details: minimumAmount,"
    " currency, totalAmount, in minor units)",
}


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses={
        200: REPLAY,
        400: {"model": ErrorBody},
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: UNPLACEABLE,
    },
    summary="Place an order (requires Idempotency-Key)",
)
async def create_order(
    request: Request, client: Writer, key: IdempotencyKey, body: OrderCreate, settings: SettingsDep,
    pool: IntakePool, enqueue: Enqueue,
) -> JSONResponse:  # fmt: skip
    """Price the order from the catalogue, write it as pending, start its saga; a repeated key replays."""
    check_limits(body, settings)
    placed = await place_order(pool, client.id, key, body, settings.step_lease_s)
    headers = {"Location": f"/v1/orders/{placed.order_id}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        request.app.state.metrics.orders_accepted.inc()
        # Dramatiq's broker is synchronous: its Redis round trip runs on a worker thread, off the event loop.
        await run_in_threadpool(start_saga, enqueue, placed.order_id)
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
        return load_detail(session, order_id)


@router.get("", response_model=Page[OrderOut], summary="List orders, newest first")
def list_orders(
    client: Reader, database_url: DatabaseUrl, limit: Limit = 20, offset: Offset = 0,
    status: OrderStatus | None = None, user_id: UserFilter = None,
) -> Page[OrderOut]:  # fmt: skip
    """A page of orders (newest first, ties by id), optionally of one status and/or one user."""
    filters = [column == value for column, value in ((Order.status, status), (Order.user_id, user_id)) if value]
    with unit_of_work(database_url) as session:
        total = session.scalar(select(func.count()).select_from(Order).where(*filters)) or 0
        rows = session.scalars(
            select(Order).where(*filters).order_by(Order.created_at.desc(), Order.id.desc()).limit(limit).offset(offset)
        ).all()
        return Page[OrderOut](
            data=[order_out(row) for row in rows], meta=PageMeta(limit=limit, offset=offset, total=total)
        )


@router.post(
    "/{order_id}/cancel",
    status_code=202,
    response_model=OrderDetail,
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "ORDER_ALREADY_SHIPPED"}},
    summary="Cancel an order that has not shipped",
)
def cancel(order_id: uuid.UUID, client: Admin, database_url: DatabaseUrl) -> OrderDetail:
    """Start the saga's compensations for the order (repeatable); 202 with the order as it now stands."""
    cancel_order(database_url, order_id)
    with unit_of_work(database_url) as session:
        return load_detail(session, order_id)


def load_detail(session: Session, order_id: uuid.UUID) -> OrderDetail:
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}", orderId=str(order_id))
    steps = session.scalars(
        select(SagaStep).where(SagaStep.order_id == order_id).order_by(SagaStep.started_at, SagaStep.id)
    ).all()
    return order_detail(order, steps)

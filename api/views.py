"""Rows to API documents: the only place that knows how table columns map to the wire format."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from api.public_errors import public_last_error, public_message
from models.inventory import Product
from models.orders import Order
from models.saga import SagaStep
from models.schemas import OrderCreate, OrderDetail, OrderItemOut, OrderOut, ProductOut, TimelineEntry
from models.status import OrderStatus


def order_out(order: Order) -> OrderOut:
    """An order as intake accepted it (the POST answer and each list item)."""
    return OrderOut(**OrderOut.fields_of(order))


def placed_order_out(
    order_id: uuid.UUID, body: OrderCreate, lines: Iterable[tuple[uuid.UUID, int, int]], created_at: datetime
) -> OrderOut:
    """The order intake is about to write, from the request and its (product, quantity, unit price) lines."""
    items = [OrderItemOut(product_id=product, quantity=quantity, price=price) for product, quantity, price in lines]
    return OrderOut(
        id=order_id,
        status=OrderStatus.PENDING,
        user_id=body.user_id,
        total_amount=sum(item.quantity * item.price for item in items),
        currency=body.currency,
        items=items,
        shipping_address=body.shipping_address.model_dump(mode="json", by_alias=True),
        email=body.email,
        created_at=created_at,
    )


def order_detail(order: Order, steps: Sequence[SagaStep]) -> OrderDetail:
    """An order with its saga position and timeline; errors as codes and safe sentences, never the raw text."""
    return OrderDetail(
        **order_out(order).model_dump(by_alias=False),
        updated_at=order.updated_at,
        cancel_reason=order.cancel_reason,
        last_error=public_last_error(order.last_error, order.cancel_reason),
        timeline=[timeline_entry(step) for step in steps],
    )


def timeline_entry(step: SagaStep) -> TimelineEntry:
    """One attempt; its error_message (exception text, operator notes) stays in the database for operators."""
    return TimelineEntry(
        step=step.step,
        kind=step.kind,
        attempt=step.attempt,
        outcome=step.outcome,
        error_code=step.error_code,
        error_message=public_message(step.error_code) if step.error_code else None,
        started_at=step.started_at,
        finished_at=step.finished_at,
        duration_ms=step.duration_ms,
    )


def wire_time(moment: datetime) -> str:
    """An instant as the documents write it: ISO 8601 in UTC with a Z, as pydantic serializes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def product_out(product: Product) -> ProductOut:
    return ProductOut(
        id=product.id,
        sku=product.sku,
        name=product.name,
        price=product.price_cents,
        currency=product.currency,
        available=product.available,
        reserved=product.reserved,
        shipped=product.shipped,
        total=product.total,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )

"""The intake API's documents (pydantic v2, camelCase on the wire): Create, Out and Page shapes kept apart.

Money is always an integer number of minor units (cents): `price` and `totalAmount` are ints, and a float
or a string where money is expected is rejected, never rounded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, model_validator
from pydantic.alias_generators import to_camel

from models.status import OrderStatus

# No control characters in free text: Postgres refuses NUL, and the rest only forge log lines.
PLAIN_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
PAYMENT_METHOD_PATTERN = r"^pm_[A-Za-z0-9_]{1,100}$"
SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_PRICE_CENTS = 10_000_000_000
MAX_STOCK = 1_000_000_000

Cents = Annotated[
    StrictInt,
    Field(ge=0, le=MAX_PRICE_CENTS, description="An integer number of minor units (cents); floats are rejected."),
]
PlainText = Annotated[str, Field(pattern=PLAIN_TEXT_PATTERN)]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code, upper case.")]
Quantity = Annotated[StrictInt, Field(ge=1, description="Units of the product; the server caps it per line.")]
Stock = Annotated[StrictInt, Field(ge=0, le=MAX_STOCK)]
# RFC 5321's limit on a forward path; email-validator checks the syntax (no deliverability look-up).
Email = Annotated[EmailStr, Field(max_length=254, description="The customer's e-mail address, for order e-mails.")]

T = TypeVar("T")


class InDocument(BaseModel):
    """A request body: camelCase keys only, unknown keys rejected, surrounding whitespace stripped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        str_strip_whitespace=True,
    )


class OutDocument(BaseModel):
    """A response body: built from Python names, serialized in camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, serialize_by_alias=True
    )


class Address(InDocument):
    """Where the order ships to."""

    street: PlainText = Field(min_length=1, max_length=200)
    city: PlainText = Field(min_length=1, max_length=100)
    state: PlainText | None = Field(default=None, max_length=100)
    zip_code: PlainText = Field(min_length=1, max_length=20)
    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2 code, upper case.")


class OrderItemCreate(InDocument):
    """One line of a new order; `price` must equal the catalogue's unit price in cents."""

    product_id: uuid.UUID
    quantity: Quantity
    price: Cents


class OrderCreate(InDocument):
    """A new order as a shop sends it."""

    user_id: PlainText = Field(min_length=1, max_length=64)
    items: list[OrderItemCreate] = Field(min_length=1, description="At least one line; the server caps the count.")
    shipping_address: Address
    payment_method_id: str = Field(pattern=PAYMENT_METHOD_PATTERN, description="A payment-provider token (pm_...).")
    currency: Currency = "USD"
    email: Email | None = None

    @model_validator(mode="after")
    def _one_line_per_product(self) -> OrderCreate:
        seen: set[uuid.UUID] = set()
        for item in self.items:
            if item.product_id in seen:
                raise ValueError(f"productId {item.product_id} appears more than once; merge the lines")
            seen.add(item.product_id)
        return self


class OrderItemOut(OutDocument):
    """One line of an order, at the unit price charged."""

    product_id: uuid.UUID
    quantity: int
    price: int = Field(description="Unit price in cents, from the catalogue at intake.")


class OrderOut(OutDocument):
    """An order as intake accepted it."""

    id: uuid.UUID
    status: OrderStatus
    user_id: str
    total_amount: int = Field(description="Sum of quantity x price, in cents.")
    currency: str
    items: list[OrderItemOut]
    shipping_address: dict[str, Any]
    email: str | None = Field(default=None, description="The customer's e-mail address, null if none was given.")
    created_at: datetime

    @staticmethod
    def fields_of(order: Any) -> dict[str, Any]:
        """These fields from a stored order: the ORM's `Order` (the API) or the saga's `LockedOrder` (its events).

        Both carry the orders columns by name and `lines` with product_id, quantity and unit_price_cents.
        """
        return {
            "id": order.id,
            "status": OrderStatus(order.status),
            "user_id": order.user_id,
            "total_amount": order.total_cents,
            "currency": order.currency,
            "items": [
                OrderItemOut(product_id=line.product_id, quantity=line.quantity, price=line.unit_price_cents)
                for line in order.lines
            ],
            "shipping_address": order.shipping_address,
            "email": order.customer_email,
            "created_at": order.created_at,
        }


class TimelineEntry(OutDocument):
    """One attempt of one saga step, compensation or operator action."""

    step: str
    kind: str
    attempt: int
    outcome: str
    error_code: str | None
    error_message: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None


class OrderDetail(OrderOut):
    """An order with where its saga stands and every step attempt so far."""

    updated_at: datetime
    cancel_reason: str | None
    last_error: str | None
    timeline: list[TimelineEntry]


class ProductCreate(InDocument):
    """A new catalogue entry with its initial stock on the shelf."""

    sku: str = Field(pattern=SKU_PATTERN)
    name: PlainText = Field(min_length=1, max_length=200)
    price: Cents
    currency: Currency = "USD"
    stock: Stock = 0


class StockUpdate(InDocument):
    """Set the units on the shelf; `total` moves by the same amount, reserved and shipped stay."""

    available: Stock


class ProductOut(OutDocument):
    """A catalogue entry and its stock counters (total = available + reserved + shipped)."""

    id: uuid.UUID
    sku: str
    name: str
    price: int = Field(description="Unit price in cents.")
    currency: str
    available: int
    reserved: int
    shipped: int
    total: int
    created_at: datetime
    updated_at: datetime


class Page(OutDocument, Generic[T]):
    """A list response: one page of items, and where the next one starts (null on the last page)."""

    data: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to read the next page; null on the last page.")
    next: str | None = Field(description="The next page's path and query, or null on the last page.")


class ErrorBody(OutDocument):
    """Every error the API returns."""

    code: str = Field(description="Stable machine-readable code, e.g. ORDER_NOT_FOUND.")
    message: str
    details: Any | None = None


class ShipmentOut(OutDocument):
    """The parcel the carrier took."""

    carrier: str
    tracking_number: str


class EventOrder(OrderOut):
    """The order as it stood when the event happened."""

    updated_at: datetime
    cancel_reason: str | None = Field(description="Why the order is being or was cancelled (a code), else null.")
    shipment: ShipmentOut | None = Field(default=None, description="Set on `order.shipped`.")


class RefundOut(OutDocument):
    """Money given back outside the saga (in cents)."""

    id: str
    amount: int


class DisputeOut(OutDocument):
    """A dispute the customer's bank opened against the charge."""

    id: str
    status: str


class EventData(OutDocument):
    """What the event is about: the order, and for money events the refund or the dispute."""

    order: EventOrder
    refund: RefundOut | None = None
    dispute: DisputeOut | None = None


class OrderEventOut(OutDocument):
    """Something that happened to one of the client's orders: the body of a webhook and of each feed item.

    `id` is unique (a redelivery repeats it: use it to drop duplicates); `sequence` counts the order's events
    from 1, so a receiver can put one order's events in order however they arrive.
    """

    id: uuid.UUID
    type: str = Field(description="order.accepted, order.reserved, ..., order.shipped, order.cancelled, ...")
    created_at: datetime
    sequence: int
    data: EventData

"""Every table, imported in one place so metadata and Alembic see them all; Core handles for the saga's hot path."""

from __future__ import annotations

from sqlalchemy import Table

from models.base import Base
from models.events import OrderEvent
from models.inventory import Product, Reservation
from models.orders import Order, OrderLine
from models.payments import Payment, Refund
from models.saga import IdempotencyKey, LocalDelivery, Notification, SagaStep, Shipment, WebhookEvent
from models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookFanout


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


ORDERS = _table(Order)
ORDER_LINES = _table(OrderLine)
PAYMENTS = _table(Payment)
REFUNDS = _table(Refund)
LOCAL_DELIVERIES = _table(LocalDelivery)
ORDER_EVENTS = _table(OrderEvent)
PRODUCTS = _table(Product)
RESERVATIONS = _table(Reservation)
NOTIFICATIONS = _table(Notification)
SHIPMENTS = _table(Shipment)
TIMELINE = _table(SagaStep)

__all__ = [
    "LOCAL_DELIVERIES",
    "NOTIFICATIONS",
    "ORDERS",
    "ORDER_EVENTS",
    "ORDER_LINES",
    "PAYMENTS",
    "PRODUCTS",
    "REFUNDS",
    "RESERVATIONS",
    "SHIPMENTS",
    "TIMELINE",
    "Base",
    "IdempotencyKey",
    "LocalDelivery",
    "Notification",
    "Order",
    "OrderEvent",
    "OrderLine",
    "Payment",
    "Product",
    "Refund",
    "Reservation",
    "SagaStep",
    "Shipment",
    "WebhookEvent",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookFanout",
]

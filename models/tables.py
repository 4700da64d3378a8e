"""Every table, imported in one place so metadata and Alembic see them all."""

from __future__ import annotations

from models.base import Base
from models.inventory import Product, Reservation
from models.orders import Order, OrderLine
from models.payments import Payment
from models.saga import IdempotencyKey, LocalDelivery, Notification, SagaStep, Shipment, WebhookEvent

__all__ = [
    "Base",
    "IdempotencyKey",
    "LocalDelivery",
    "Notification",
    "Order",
    "OrderLine",
    "Payment",
    "Product",
    "Reservation",
    "SagaStep",
    "Shipment",
    "WebhookEvent",
]

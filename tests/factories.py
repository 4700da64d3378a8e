"""Random references and ready-made rows for tests."""

from __future__ import annotations

import uuid
from typing import Any


def random_suffix() -> str:
    return uuid.uuid4().hex[:8]


def random_sku(name: str = "") -> str:
    return f"sku-{name}-{random_suffix()}"


def random_user() -> str:
    return f"user-{random_suffix()}"


def make_product(db_url: str, *, stock: int = 100, price_cents: int = 1250, currency: str = "USD") -> uuid.UUID:
    """A catalogue row with `stock` units on the shelf; returns its id."""
    from models.db import unit_of_work
    from models.inventory import Product

    with unit_of_work(db_url) as session:
        product = Product(
            sku=random_sku(),
            name="Mug",
            price_cents=price_cents,
            currency=currency,
            total=stock,
            available=stock,
            reserved=0,
            shipped=0,
        )
        session.add(product)
        session.flush()
        return product.id


GOOD_ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "US"}
# The local carrier does not deliver to ZZ: the ship step fails for good.
UNDELIVERABLE_ADDRESS = GOOD_ADDRESS | {"street": "1 Nowhere", "country": "ZZ"}


def make_order(
    db_url: str,
    lines: list[tuple[uuid.UUID, int]],
    *,
    payment_method: str = "pm_card_visa",
    address: dict[str, str] | None = None,
    price_cents: int = 1250,
    extra_cents: int = 0,
    client_id: str = "shop-1",
    email: str | None = None,
) -> uuid.UUID:
    """A pending order as intake writes it (lease included), not yet sent to the saga."""
    from models.db import unit_of_work
    from models.orders import Order, OrderLine
    from pipeline.order_store import lease_until

    with unit_of_work(db_url) as session:
        order = Order(
            client_id=client_id,
            user_id=random_user(),
            currency="USD",
            total_cents=sum(q * price_cents for _, q in lines) + extra_cents,
            payment_method_id=payment_method,
            shipping_address=address or GOOD_ADDRESS,
            customer_email=email,
            current_step="reserve_stock",
            lease_expires_at=lease_until(30),
        )
        order.lines = [
            OrderLine(product_id=product, line_no=n, quantity=q, unit_price_cents=price_cents)
            for n, (product, q) in enumerate(lines, start=1)
        ]
        session.add(order)
        session.flush()
        return order.id


def execute(db_url: str, sql: str, **params: Any) -> None:
    """Run one statement on the test database and commit it."""
    from sqlalchemy import text

    from models.db import engine_for

    with engine_for(db_url).begin() as connection:
        connection.execute(text(sql), params)


def stalled(db_url: str, status: str = "pending", step: str | None = "reserve_stock") -> uuid.UUID:
    """An order in `status` whose lease ran out a minute ago (its worker died, its message was lost)."""
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    execute(
        db_url,
        "UPDATE orders SET status = :status, current_step = :step, lease_expires_at = now() - interval '1 minute',"
        " deliveries = 3, cancel_reason = :reason, last_error = :error WHERE id = :id",
        id=order_id,
        status=status,
        step=step,
        reason="PAYMENT_DECLINED" if status in ("needs_attention", "cancelled") else None,
        error=f"{step}: TRANSIENT_ERROR: provider down" if status == "needs_attention" else None,
    )
    return order_id

"""The demo shop: its catalogue, a realistic mix of orders, and a client that places them through the API."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from models.db import unit_of_work
from models.inventory import Product

ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "US"}
NOWHERE = ADDRESS | {"country": "ZZ"}


def seed_catalogue(database_url: str) -> list[dict[str, Any]]:
    """Four well-stocked products and one limited edition that sells out during the demo."""
    stocks = {"Mug": 100_000, "Tee": 100_000, "Cap": 100_000, "Poster": 100_000, "Limited print": 15}
    with unit_of_work(database_url) as session:
        products = [
            Product(
                sku=f"demo-{uuid.uuid4().hex[:8]}",
                name=name,
                price_cents=random.randint(500, 5000),
                total=stock,
                available=stock,
                reserved=0,
                shipped=0,
            )
            for name, stock in stocks.items()
        ]
        session.add_all(products)
        session.flush()
        return [{"id": str(p.id), "name": p.name, "price": p.price_cents} for p in products]


def demo_order(index: int, catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """A mix that mostly succeeds, and sometimes is declined, sells out, or cannot be shipped."""
    lines = random.sample(catalogue[:4], k=random.randint(1, 2))
    if index % 8 == 3:
        lines.append(catalogue[4])
    declines = {0: "pm_card_chargeDeclined", 10: "pm_card_chargeDeclinedInsufficientFunds"}
    method = declines.get(index % 20, "pm_card_visa")
    return {
        "userId": f"demo-user-{index % 50}",
        "email": f"demo-user-{index % 50}@example.com",  # the confirmation or cancellation goes here
        "items": [{"productId": p["id"], "quantity": random.randint(1, 3), "price": p["price"]} for p in lines],
        "shippingAddress": NOWHERE if index % 25 == 7 else ADDRESS,
        "paymentMethodId": method,
        "currency": "USD",
    }


def place_orders(api: str, token: str, catalogue: list[dict[str, Any]], count: int, rate: float) -> list[str]:
    """POST `count` orders at about `rate` per second from 8 client threads; returns the order ids.

    Like a careful client, each order is retried with its idempotency key while the API or its
    database is away, so an order is never placed twice.
    """
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client, ThreadPoolExecutor(8) as pool:

        def place(index: int) -> str:
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            body, key = demo_order(index, catalogue), str(uuid.uuid4())
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
                    if response.status_code in (200, 201):
                        return str(response.json()["id"])
                    if response.status_code < 500 and response.status_code != 429:
                        raise RuntimeError(f"order {index} refused: {response.status_code} {response.text[:300]}")
                except httpx.TransportError:
                    pass  # the API or its database is restarting: a client retries with the same key
                if time.monotonic() > deadline:
                    raise RuntimeError(f"order {index} was not accepted within 120 s")
                time.sleep(0.5)

        started = time.monotonic()
        return list(pool.map(place, range(count)))

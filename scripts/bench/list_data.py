"""The list bench's data: a year of terminal orders written with COPY, where deep pages start, and their plans."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from api import order_list
from api.pagination import encode_cursor
from models.status import OrderStatus

# (sku, name, price in cents): a small catalogue, so every line names one of a few products.
PRODUCTS = (
    ("list-mug", "Mug", 1250),
    ("list-tee", "T-shirt", 2400),
    ("list-cap", "Cap", 1800),
    ("list-tote", "Tote bag", 950),
    ("list-pen", "Pen", 300),
)
# A year-old table is almost all terminal orders.
STATUSES = (OrderStatus.SHIPPED.value, OrderStatus.CANCELLED.value, OrderStatus.NEEDS_ATTENTION.value)
STATUS_WEIGHTS = (88, 11, 1)
CANCEL_REASONS = ("OUT_OF_STOCK", "PAYMENT_DECLINED", "CANCELLED_BY_OPERATOR")
PARKED_ERROR = "refund_payment: REFUND_FAILED: the card issuer refused the refund"
USERS_PER_CLIENT = 2500
YEAR_S = 365 * 86400
ADDRESSES = tuple(
    json.dumps({"street": f"{n} Main St", "city": city, "state": state, "zipCode": zip_code, "country": "US"})
    for n, (city, state, zip_code) in enumerate(
        (
            ("Springfield", "IL", "62701"),
            ("Portland", "OR", "97201"),
            ("Austin", "TX", "78701"),
            ("Boston", "MA", "02108"),
            ("Denver", "CO", "80202"),
        ),
        start=1,
    )
)
ORDER_COLUMNS = (
    "id, client_id, user_id, status, currency, total_cents, payment_method_id, shipping_address, cancel_reason, "
    "last_error, created_at, updated_at"
)
LINE_COLUMNS = "order_id, product_id, line_no, quantity, unit_price_cents"  # the line's id is the column default


@dataclass(frozen=True)
class DeepPage:
    """Where page `page` of a list starts: the cursor asking for it, that cursor's key, and the page's first order."""

    page: int
    cursor: str
    key: tuple[datetime, uuid.UUID]
    first_id: str


def client_ids(count: int) -> list[str]:
    return [f"shop-{n:03d}" for n in range(1, count + 1)]


def seed_products(libpq: str) -> list[tuple[uuid.UUID, int]]:
    """The catalogue's (id, price); stock counters that satisfy every CHECK and that nothing here moves."""
    with psycopg.connect(libpq) as conn:
        return [
            conn.execute(
                "INSERT INTO products (sku, name, price_cents, total, available) VALUES (%s, %s, %s, 1000000, 1000000) "
                "RETURNING id, price_cents",
                product,
            ).fetchone()
            or (uuid.uuid4(), 0)
            for product in PRODUCTS
        ]


def generated(
    orders: int, clients: list[str], products: list[tuple[uuid.UUID, int]], start: datetime, seed: int
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Each order and its one line, oldest first, as a table grows; the same arguments give the same rows."""
    rng = random.Random(seed)
    owners = [clients[n % len(clients)] for n in range(orders)]  # every client gets its share, give or take one
    rng.shuffle(owners)
    offsets = sorted(rng.random() * YEAR_S for _ in range(orders))
    for owner, offset in zip(owners, offsets, strict=True):
        created = start + timedelta(seconds=offset)
        user = int(USERS_PER_CLIENT * rng.random() ** 2)  # repeat customers: the low numbers buy most
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        product, price = products[rng.randrange(len(products))]
        quantity = rng.randint(1, 3)
        order_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        reason = rng.choice(CANCEL_REASONS) if status == OrderStatus.CANCELLED else None
        error = PARKED_ERROR if status == OrderStatus.NEEDS_ATTENTION else None
        updated = created + timedelta(seconds=rng.uniform(60, 3 * 86400))
        order = (
            order_id,
            owner,
            f"{owner}/u{user:05d}",
            status,
            "USD",
            price * quantity,
            "pm_card_visa",
            ADDRESSES[user % len(ADDRESSES)],
            reason,
            error,
            created,
            updated,
        )
        yield order, (order_id, product, 1, quantity, price)


def load(
    libpq: str, orders: int, clients: list[str], products: list[tuple[uuid.UUID, int]], seed: int
) -> dict[str, Any]:
    """Replace every order with `orders` new ones (one line each) by COPY, then VACUUM ANALYZE; seconds per part."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=YEAR_S + 3600)
    timings: dict[str, Any] = {"orders": orders, "clients": len(clients)}
    began = time.perf_counter()
    with psycopg.connect(libpq) as conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE orders CASCADE")
        for table, columns, part in (("orders", ORDER_COLUMNS, 0), ("order_lines", LINE_COLUMNS, 1)):
            copying = time.perf_counter()
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in generated(orders, clients, products, start, seed):
                    copy.write_row(row[part])
            timings[f"copy_{table}_s"] = time.perf_counter() - copying
    copied = time.perf_counter()
    with psycopg.connect(libpq, autocommit=True) as conn:
        # Hint bits and the visibility map set, as autovacuum leaves a table that has been there a while.
        conn.execute("VACUUM (ANALYZE) orders, order_lines")
    timings["vacuum_analyze_s"] = time.perf_counter() - copied
    timings["total_s"] = time.perf_counter() - began
    return timings


def deep_page(conn: psycopg.Connection[Any], client: str | None, size: int, page: int) -> DeepPage:
    """Page `page` (>= 2) of `client`'s list (None: every order, as admin sees it), newest first, ties by id."""
    where = "WHERE client_id = %(client)s" if client else ""
    rows = conn.execute(
        f"SELECT created_at, id FROM orders {where} ORDER BY created_at DESC, id DESC OFFSET %(skip)s LIMIT 2",
        {"client": client, "skip": (page - 1) * size - 1},
    ).fetchall()
    if len(rows) < 2:
        raise ValueError(f"{client or 'the admin list'} has no page {page} of {size} orders")
    (created_at, last_id), (_, first_id) = rows
    return DeepPage(page, encode_cursor((created_at.isoformat(), str(last_id))), (created_at, last_id), str(first_id))


def users_of(conn: psycopg.Connection[Any], client: str, count: int = 20) -> list[str]:
    """Some of the client's customers (fixed choice), for the userId filter."""
    rows = conn.execute(
        "SELECT user_id FROM (SELECT DISTINCT user_id FROM orders WHERE client_id = %s) AS u ORDER BY md5(user_id) "
        "LIMIT %s",
        (client, count),
    ).fetchall()
    return [row[0] for row in rows]


def explain(
    conn: psycopg.Connection[Any],
    size: int,
    client: str | None = None,
    after: DeepPage | None = None,
    status: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the page query `GET /v1/orders` runs (api/order_list.py), summed up."""
    query, params = order_list.page_query(
        size + 1, client_id=client, status=status, user_id=user, after=None if after is None else after.key
    )
    row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params).fetchone()
    assert row is not None
    return plan_summary(row[0][0])


def plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """Which nodes ran (scan, index, direction), rows, buffers, time, and whether any sorted or filtered rows."""
    nodes = list(_walk(plan["Plan"]))
    scans = [node for node in nodes if node["Node Type"].endswith("Scan")]
    return {
        "plan": " > ".join(_label(node) for node in nodes),
        "index_cond": next((node["Index Cond"] for node in scans if "Index Cond" in node), None),
        "sorted": any("Sort" in node["Node Type"] for node in nodes),
        "rows": plan["Plan"]["Actual Rows"],
        "rows_scanned": sum(node["Actual Rows"] * node.get("Actual Loops", 1) for node in scans),
        "rows_removed": sum(node.get("Rows Removed by Filter", 0) for node in nodes),
        "shared_hit": plan["Plan"].get("Shared Hit Blocks", 0),
        "shared_read": plan["Plan"].get("Shared Read Blocks", 0),
        "planning_ms": plan.get("Planning Time"),
        "execution_ms": plan.get("Execution Time"),
    }


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _label(node: dict[str, Any]) -> str:
    label = str(node["Node Type"]) + (" Backward" if node.get("Scan Direction") == "Backward" else "")
    return label + (f" using {node['Index Name']}" if "Index Name" in node else "")

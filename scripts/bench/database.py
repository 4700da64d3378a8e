"""Where a bench run happens: a throwaway database with well-stocked products, a Redis of its own, fresh orders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg.types.json import Jsonb
from sqlalchemy.engine import make_url

from pipeline.config import Settings
from scripts.bench.config import BenchConfig
from scripts.devstack import localstack

PRICE_CENTS = 1250
ADDRESS = {"street": "1 Main St", "city": "Springfield", "state": "IL", "zipCode": "62701", "country": "US"}


@dataclass
class Target:
    """Where the servers of this run are, and what the run needs to talk to them."""

    database_url: str
    redis_url: str
    product_ids: list[uuid.UUID]
    log_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def dbname(self) -> str:
        return str(make_url(self.database_url).database)

    def libpq(self, database: str | None = None) -> str:
        url = make_url(self.database_url).set(drivername="postgresql")
        return (url.set(database=database) if database else url).render_as_string(hide_password=False)

    def note(self, note: str) -> None:
        """Remember something the reader of the results should know, once."""
        if note not in self.notes:
            self.notes.append(note)


@contextmanager
def bench_target(config: BenchConfig) -> Iterator[Target]:
    """A throwaway migrated database with `config.products` well-stocked products, and a Redis nobody else uses."""
    base = config.database_url or Settings().database_url
    with ExitStack() as stack:
        database_url = stack.enter_context(localstack.scratch_database(base, "orderflow_bench"))
        redis_url = config.redis_url or stack.enter_context(localstack.scratch_redis())
        if config.redis_url:
            with redis.Redis.from_url(redis_url) as client:
                if client.dbsize():
                    raise localstack.StackError("--redis-url must name an empty Redis database: the bench flushes it")
            stack.callback(flush_redis, redis_url)
        with psycopg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False)) as conn:
            products = conn.execute(
                "INSERT INTO products (sku, name, price_cents, total, available) SELECT 'bench-' || n, 'Mug', %s, "
                "1000000000, 1000000000 FROM generate_series(1, %s) AS n RETURNING id",
                (PRICE_CENTS, config.products),
            ).fetchall()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        yield Target(database_url, redis_url, [row[0] for row in products], config.log_dir)


# The clients the phases place orders as: the chains' and the intake load's (a history's are shop-NNN).
LOAD_CLIENT = "load"
BENCH_CLIENTS = ("bench", LOAD_CLIENT)


def fresh_orders(target: Target, warmup: int, orders: int, tag: str) -> tuple[list[str], list[str]]:
    """Remove the previous phase's orders, then write warm-up and measured ones as intake would (pending, leased).

    Only the bench's own orders go (by client id, with what hangs off them by cascade): a loaded history
    (`--history`) stays, as the phases after it are measured beside it.
    """
    warm_ids, ids = [str(uuid.uuid4()) for _ in range(warmup)], [str(uuid.uuid4()) for _ in range(orders)]
    with psycopg.connect(target.libpq()) as conn:
        remove_bench_orders(conn)
        conn.execute("TRUNCATE local_deliveries")
        for user, batch in ((f"bench-warm-{tag}", warm_ids), (f"bench-{tag}", ids)):
            products = [target.product_ids[n % len(target.product_ids)] for n in range(len(batch))]
            params = {"ids": batch, "user": user, "price": PRICE_CENTS, "address": Jsonb(ADDRESS), "products": products}
            conn.execute(
                "INSERT INTO orders (id, client_id, user_id, currency, total_cents, payment_method_id, "
                "shipping_address, current_step, lease_expires_at) SELECT id, 'bench', %(user)s, 'USD', %(price)s, "
                "'pm_card_visa', %(address)s, 'reserve_stock', now() + interval '1 hour' "
                "FROM unnest(%(ids)s::uuid[]) AS id",
                params,
            )
            conn.execute(
                "INSERT INTO order_lines (order_id, product_id, line_no, quantity, unit_price_cents) "
                "SELECT id, product, 1, 1, %(price)s "
                "FROM unnest(%(ids)s::uuid[], %(products)s::uuid[]) AS t(id, product)",
                params,
            )
        conn.execute("ANALYZE orders, order_lines")
    return warm_ids, ids


def remove_bench_orders(conn: psycopg.Connection[Any]) -> None:
    """Delete the bench's own orders (by client id, with what hangs off them by cascade); a history stays."""
    conn.execute("DELETE FROM orders WHERE client_id = ANY(%s)", [list(BENCH_CLIENTS)])


def flush_redis(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()

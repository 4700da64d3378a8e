"""unit_of_work() commits only a block that returns."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from models.db import engine_for, single_statements, unit_of_work
from models.inventory import Product
from tests.factories import random_sku


def count_products(db_url: str) -> int:
    with unit_of_work(db_url) as session:
        return session.scalar(select(func.count()).select_from(Product)) or 0


def test_a_block_that_returns_is_committed(db_url: str) -> None:
    with unit_of_work(db_url) as session:
        session.add(Product(sku=random_sku(), name="mug", price_cents=1200))

    assert count_products(db_url) == 1


def test_a_block_that_raises_is_rolled_back(db_url: str) -> None:
    with pytest.raises(RuntimeError), unit_of_work(db_url) as session:
        session.add(Product(sku=random_sku(), name="mug", price_cents=1200))
        session.flush()
        raise RuntimeError("boom")

    assert count_products(db_url) == 0


def test_postgres_ends_a_transaction_left_idle_so_a_stuck_thread_cannot_hold_an_order_lock_forever(
    db_url: str,
) -> None:
    # Set on every pooled connection: a step's thread stuck while its transaction holds an order's row lock
    # would otherwise keep that order from every other step and from the reaper (which skips locked rows).
    with engine_for(db_url).connect() as connection:
        assert connection.scalar(text("SHOW idle_in_transaction_session_timeout")) == "2min"
        # The same setting, shortened: Postgres ends the session, and so its transaction and row locks.
        with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
            connection.execute(text("SET idle_in_transaction_session_timeout = '200ms'"))
            connection.execute(text("SELECT 1 FROM products LIMIT 1 FOR UPDATE"))
            time.sleep(1)
            connection.execute(text("SELECT 1"))


def test_a_single_statement_is_committed_at_once_and_the_pooled_connection_comes_back_transactional(
    db_url: str,
) -> None:
    sku = random_sku()
    with single_statements(db_url) as connection:
        connection.execute(
            text("INSERT INTO products (sku, name, price_cents) VALUES (:sku, 'mug', 1200)"), {"sku": sku}
        )
        # Visible to everyone before the block ends: nothing is left to commit (the ledger's pre-charge row
        # must survive whatever the step does next).
        assert count_products(db_url) == 1
        driver = connection.connection.driver_connection
        assert driver is not None and driver.autocommit

    # And the connection went back to the pool transactional again: the next user's transaction is one
    assert not driver.autocommit

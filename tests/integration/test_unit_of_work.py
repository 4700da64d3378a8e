"""unit_of_work() commits only a block that returns."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models.db import unit_of_work
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

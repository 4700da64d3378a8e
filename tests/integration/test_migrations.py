"""The schema is built only by Alembic, and the migrations go up and down cleanly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool, text

from models import migrate
from models.tables import Base
from scripts.devstack import localstack
from tests.conftest import Servers


@pytest.fixture
def empty_database(servers: Servers) -> Iterator[str]:
    with localstack.scratch_database(servers.database_url, "orderflow_migrations", migrated=False) as url:
        yield url


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names - {"alembic_version"}


def test_upgrade_on_an_empty_database_creates_every_table(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    assert table_names(empty_database) == set(Base.metadata.tables)
    assert migrate.current(empty_database) is not None


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    migrate.downgrade(empty_database, "base")
    assert table_names(empty_database) == set()
    assert migrate.current(empty_database) is None

    migrate.upgrade(empty_database)
    assert table_names(empty_database) == set(Base.metadata.tables)


def test_every_cascading_foreign_key_leads_an_index_so_deleting_a_parent_never_scans_the_child_table(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database)
    engine = create_engine(empty_database, poolclass=pool.NullPool)
    with engine.connect() as connection:
        unindexed = (
            connection.execute(
                text("""
            SELECT c.conrelid::regclass::text || '.' || a.attname
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confdeltype = 'c'
              AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
            """)
            )
            .scalars()
            .all()
        )
    engine.dispose()

    assert unindexed == []


def test_the_models_and_the_migrations_describe_the_same_schema(servers: Servers) -> None:
    engine = create_engine(servers.database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()

    assert differences == []


OLD_ORDER = """
INSERT INTO orders (id, user_id, currency, total_cents, payment_method_id, shipping_address)
VALUES (:id, 'u-1', 'USD', 1250, 'pm_card_visa', '{}')
"""


def test_0003_gives_each_existing_order_the_client_of_its_idempotency_key_and_goes_back_down(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database, "0002")
    keyed, unkeyed = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(empty_database, poolclass=pool.NullPool)
    with engine.begin() as connection:
        for order_id in (keyed, unkeyed):
            connection.execute(text(OLD_ORDER), {"id": order_id})
        connection.execute(
            text(
                "INSERT INTO idempotency_keys (client_id, key, request_hash, order_id, response_code, response_body) "
                "VALUES ('shop-a', 'k-1', 'h', :id, 201, '{}')"
            ),
            {"id": keyed},
        )

    migrate.upgrade(empty_database, "0003")
    with engine.connect() as connection:
        owners = {row.id: row.client_id for row in connection.execute(text("SELECT id, client_id FROM orders"))}
        (client_column,) = [c for c in inspect(connection).get_columns("orders") if c["name"] == "client_id"]
    assert owners == {keyed: "shop-a", unkeyed: "legacy:unowned"} and client_column["nullable"] is False

    migrate.downgrade(empty_database, "0002")
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("orders")}
        assert connection.scalar(text("SELECT count(*) FROM orders")) == 2
    engine.dispose()
    assert "client_id" not in columns

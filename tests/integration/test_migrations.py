"""The schema is built only by Alembic, and the migrations go up and down cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from models import migrate
from models.tables import Base
from scripts import localstack
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


def test_the_models_and_the_migrations_describe_the_same_schema(servers: Servers) -> None:
    engine = create_engine(servers.database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()

    assert differences == []

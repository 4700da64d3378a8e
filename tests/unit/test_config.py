"""Settings read the environment once, in one place."""

from __future__ import annotations

import pytest

from models.db import mask_password
from pipeline.config import Settings


def test_plain_postgres_urls_are_read_with_the_psycopg3_driver() -> None:
    settings = Settings(database_url="postgresql://u:p@db:5432/shop")

    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/shop"


def test_blank_urls_mean_the_embedded_servers() -> None:
    settings = Settings(database_url="", redis_url="")

    assert settings.database_url is None
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://shop:s3cret@db:5432/orders", "postgresql+psycopg://shop:***@db:5432/orders"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_passwords_are_masked_in_urls_shown_to_people(url: str, masked: str) -> None:
    assert mask_password(url) == masked

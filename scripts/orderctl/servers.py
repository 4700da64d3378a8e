"""Which Postgres and Redis a command talks to: those of DATABASE_URL / REDIS_URL, or the embedded ones."""

from __future__ import annotations

import os

from pipeline.config import get_settings
from scripts import localstack


def stack() -> localstack.Stack:
    """The servers from DATABASE_URL / REDIS_URL, or the embedded ones, started on demand."""
    settings = get_settings()
    return localstack.resolve(settings.database_url, settings.redis_url, settings.stack_dir)


def connect() -> localstack.Stack:
    """The servers, exported to the environment: the workers' broker reads REDIS_URL when first imported."""
    servers = stack()
    os.environ.update(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
    get_settings.cache_clear()
    return servers

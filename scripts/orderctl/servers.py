"""Which Postgres and Redis a command talks to: those of DATABASE_URL / REDIS_URL, or the embedded ones."""

from __future__ import annotations

import os

from pipeline.config import get_settings
from scripts.stack import Stack, resolve


def stack() -> Stack:
    """The servers from DATABASE_URL / REDIS_URL, or the embedded ones, started on demand."""
    settings = get_settings()
    return resolve(settings.database_url, settings.redis_url, settings.stack_dir)


def connect() -> Stack:
    """The servers, exported to the environment (for the processes a command starts), and the broker installed."""
    from workers.broker import install  # here: commands that only read do not load Dramatiq

    servers = stack()
    os.environ.update(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
    get_settings.cache_clear()
    install(get_settings())
    return servers

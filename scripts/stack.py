"""Which Postgres and Redis a tool talks to: the configured URLs, or the embedded servers of the source tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis


class StackError(RuntimeError):
    """A server could not be started or reached."""


@dataclass(frozen=True)
class Stack:
    """Where the servers listen; root is the stack folder (settings.stack_dir) holding the embedded ones' data."""

    database_url: str
    redis_url: str
    root: Path


def resolve(database_url: str | None, redis_url: str | None, root: Path) -> Stack:
    """The servers to use: the configured URLs as they are, the embedded ones for what is unset."""
    if database_url is None or redis_url is None:
        try:
            from scripts.devstack.localstack import ensure_up
        except ModuleNotFoundError as error:
            raise StackError(
                f"DATABASE_URL or REDIS_URL is unset, and the embedded servers need the source tree and "
                f"orderflow[local] ({error}): set both URLs"
            ) from None
        embedded = ensure_up(root)
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    check_reachable(database_url, redis_url)
    return Stack(database_url, redis_url, root)


def check_reachable(database_url: str, redis_url: str) -> None:
    """Raise StackError naming the URL (password masked) when a server does not answer."""
    import psycopg

    from models.db import mask_password

    try:
        with psycopg.connect(libpq_url(database_url), connect_timeout=5):
            pass
    except (psycopg.Error, ValueError) as error:
        raise StackError(f"cannot reach Postgres at {mask_password(database_url)}: {_first_line(error)}") from None
    try:
        with redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as client:
            client.ping()
    except (redis.RedisError, ValueError) as error:
        raise StackError(f"cannot reach Redis at {mask_password(redis_url)}: {_first_line(error)}") from None


def libpq_url(url: str) -> str:
    """A SQLAlchemy psycopg URL as libpq (psycopg.connect) reads it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]

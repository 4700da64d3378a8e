"""Random references and ready-made rows for tests."""

from __future__ import annotations

import uuid


def random_suffix() -> str:
    return uuid.uuid4().hex[:8]


def random_sku(name: str = "") -> str:
    return f"sku-{name}-{random_suffix()}"


def random_user() -> str:
    return f"user-{random_suffix()}"

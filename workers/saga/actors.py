"""How saga actors are declared: queue and retry policy come from the saga table (or settings), not each actor.

Actors bind to the broker installed when they are declared, so only the worker's entry point imports the
modules that declare them (workers/saga/worker.py), after installing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq

from pipeline import saga
from pipeline.config import get_settings
from pipeline.errors import PermanentError
from workers.broker import installed

ActorFn = Callable[[str], None]


def saga_actor(name: str) -> Callable[[ActorFn], dramatiq.Actor[[str], None]]:
    """Declare the actor for step or compensation `name` with its queue and bounded retries.

    Permanent errors are handled inside the runner; `throws` is the backstop that keeps Dramatiq
    from retrying one that slipped through. Exhausted retries go to `saga_exhausted`.
    """
    retry = get_settings().retry_of(name)
    options: dict[str, Any] = {
        "actor_name": name,
        "broker": installed(),
        "queue_name": saga.queue_of(name),
        "max_retries": retry.max_retries,
        "min_backoff": retry.min_backoff_ms,
        "max_backoff": retry.max_backoff_ms,
        "throws": (PermanentError,),
        "on_retry_exhausted": "saga_exhausted",
        "time_limit": 120_000,
    }
    return dramatiq.actor(**options)  # type: ignore[no-any-return]

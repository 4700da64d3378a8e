"""The saga worker's entry point, `dramatiq workers.saga.worker`: install the broker, then declare every actor.

Dramatiq's CLI imports this module in each worker process and uses the broker it installed. It is the
only module that imports the actor declarations, so nothing else (the API, the reaper, the autoscaler)
loads them, the stripe SDK or a broker by importing the workers package.
"""

from __future__ import annotations

from pipeline.config import get_settings
from pipeline.logs import configure_logging
from workers.broker import install

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)
broker = install(_settings)

from workers.saga import compensation_actors, step_actors  # noqa: E402  (declared on the broker installed above)

__all__ = ["broker", "compensation_actors", "step_actors"]

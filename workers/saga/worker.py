"""The saga worker's entry point, `dramatiq workers.saga.worker`: install the broker, then declare every actor.

Dramatiq's CLI imports this module in each worker process and uses the broker it installed. It is the
only module that imports the actor declarations, so nothing else (the API, the reaper, the autoscaler)
loads them, the stripe SDK or a broker by importing the workers package.
"""

from __future__ import annotations

import sys

from pipeline.config import get_settings
from pipeline.logs import configure_logging
from workers.broker import install

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)
broker = install(_settings)

# Imported after the install: the worker's metrics folder must be set before anything loads pipeline.metrics
# (prometheus_client picks its storage at first import), and the adapters load it.
from pipeline.adapters import check_adapter_settings  # noqa: E402

try:
    check_adapter_settings(_settings)  # refuse at start, not at the first order (adapters are built lazily)
except RuntimeError as refused:
    sys.exit(f"orderflow worker refuses to start: {refused}")  # one line on stderr, exit status 1

from workers.saga import compensation_actors, step_actors  # noqa: E402  (declared on the broker installed above)
from workers.webhooks import actors as webhook_actors  # noqa: E402  (the webhooks queue, same broker)

__all__ = ["broker", "compensation_actors", "step_actors", "webhook_actors"]

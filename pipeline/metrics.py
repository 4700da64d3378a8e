"""The saga's domain metrics; Dramatiq's Prometheus middleware adds the per-message ones.

In worker processes PROMETHEUS_MULTIPROC_DIR is set before this module is first imported, so
the values land in the shared multiprocess files the exposition server reads.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STEP_SECONDS = Histogram(
    "orderflow_step_duration_seconds",
    "Time of one step or compensation attempt.",
    ["step", "kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STEP_FAILURES = Counter("orderflow_step_failures_total", "Failed attempts by error code.", ["step", "kind", "code"])
COMPENSATIONS = Counter("orderflow_compensations_total", "Sagas that started compensating, by reason.", ["reason"])
ORDERS_FINISHED = Counter("orderflow_orders_finished_total", "Orders reaching a terminal state.", ["status"])
TIME_TO_SHIP = Histogram(
    "orderflow_order_time_to_ship_seconds",
    "From intake to shipped.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
REDRIVEN = Counter("orderflow_orders_redriven_total", "Orders whose lease ran out and were re-driven.", ["step"])

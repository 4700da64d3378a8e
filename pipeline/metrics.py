"""The saga's domain metrics; Dramatiq's Prometheus middleware adds the per-message ones.

In worker processes PROMETHEUS_MULTIPROC_DIR is set before this module is first imported, so
the values land in the shared multiprocess files the exposition server reads.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STEP_SECONDS = Histogram(
    "orderflow_step_duration_seconds",
    "Time of one step or compensation attempt.",
    ["step", "kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STEP_FAILURES = Counter("orderflow_step_failures_total", "Failed attempts by error code.", ["step", "kind", "code"])
STEPS_HANDED_ON = Counter(
    "orderflow_steps_handed_on_total",
    "Forward steps handed on by the step before them: run in the same worker thread (inline), in the same "
    "transaction too (joined), or sent as a message of their own (message: that step failed at once, the "
    "thread's time ran out, or one step ran alone).",
    ["step", "how"],
)
COMPENSATIONS = Counter("orderflow_compensations_total", "Sagas that started compensating, by reason.", ["reason"])
ORDERS_FINISHED = Counter("orderflow_orders_finished_total", "Orders reaching a terminal state.", ["status"])
TIME_TO_SHIP = Histogram(
    "orderflow_order_time_to_ship_seconds",
    "From intake to shipped.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
HELD = Counter("orderflow_orders_held_total", "Orders held for an operator before shipping, by reason.", ["reason"])
SHIPPED_DESPITE_CANCEL = Counter(
    "orderflow_orders_shipped_despite_cancel_total",
    "Orders whose cancel came after the carrier picked the parcel up: shipped, not refunded.",
)
PROVIDER_AUTH_FAILURES = Counter(
    "orderflow_provider_auth_failures_total",
    "Steps refused by a provider for our credentials (401/403): retried, never cancelled.",
    ["step"],
)
LATE_CHARGES = Counter(
    "orderflow_late_charges_total", "Charges the provider reported after their order was cancelled (refunded again)."
)
REFUNDS_FAILED = Counter("orderflow_refunds_failed_total", "Refunds the provider reported failed after the cancel.")
AFTER_SHIPMENT = Counter(
    "orderflow_money_after_shipment_total",
    "Refunds or disputes made outside the saga after the order shipped (recorded, never undone).",
    ["kind"],
)
EMAILS = Counter(
    "orderflow_emails_total",
    "Customer e-mails by kind and outcome: sent, deferred (4xx, retried), rejected (5xx), no_address (skipped).",
    ["kind", "outcome"],
)
REDRIVEN = Counter("orderflow_orders_redriven_total", "Orders whose lease ran out and were re-driven.", ["step"])

# Crash recovery, exported by the reaper process (REAPER_METRICS_PORT).
STALLED = Gauge(
    "orderflow_orders_stalled", "Live orders whose lease had run out at the last sweep.", multiprocess_mode="livemax"
)
RECOVERY_SECONDS = Histogram(
    "orderflow_recovery_latency_seconds",
    "From an order's last progress to the reaper re-driving it (the recovery time of a crash).",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 900),
)
POISONED = Counter(
    "orderflow_orders_poisoned_total", "Orders whose step was re-driven too often and was given up.", ["step"]
)
RESERVATIONS_EXPIRED = Counter(
    "orderflow_reservations_expired_total", "Orders cancelled because their stock was held past the TTL."
)
ORDERS_IN_STATE = Gauge(
    "orderflow_orders",
    "Orders by open status (live, or needs_attention) at the last count; shipped and cancelled: orders_finished_total.",
    ["status"],
    multiprocess_mode="livemax",
)

# Shops' webhooks: the delivery actor counts attempts (worker processes); the reaper's pass sets the gauges.
WEBHOOK_DELIVERIES = Counter(
    "orderflow_webhook_deliveries_total",
    "Webhook attempts by outcome: delivered, retrying, failed (gave up), refused (URL guard), skipped.",
    ["outcome"],
)
WEBHOOK_OLDEST_UNDELIVERED = Gauge(
    "orderflow_webhook_oldest_undelivered_seconds",
    "Age of the oldest event still pending delivery to an enabled endpoint, at the last pass (0 when none).",
    multiprocess_mode="livemax",
)
RETENTION_PRUNED = Counter(
    "orderflow_retention_pruned_total",
    "Rows deleted by retention, by table (idempotency keys, Stripe event ids, order events, local records).",
    ["table"],
)
RETENTION_OLDEST_AGE = Gauge(
    "orderflow_retention_oldest_row_age_seconds",
    "Age of the oldest row left in a table retention prunes, at its last pass.",
    ["table"],
    multiprocess_mode="livemax",
)
RETENTION_TTL = Gauge(
    "orderflow_retention_ttl_seconds",
    "The age after which retention deletes a table's rows (its setting); 0: kept for ever.",
    ["table"],
    multiprocess_mode="livemax",
)
WEBHOOK_ENDPOINTS_DISABLED = Gauge(
    "orderflow_webhook_endpoints_disabled",
    "Webhook endpoints disabled (by failing too long, or by their client), at the last pass.",
    multiprocess_mode="livemax",
)
WEBHOOK_ENDPOINTS_AUTO_DISABLED = Counter(
    "orderflow_webhook_endpoints_auto_disabled_total", "Endpoints disabled for failing longer than allowed."
)

"""One run of `deliver_webhook`: claim the delivery, check the URL again, POST it signed, settle it, send what's next.

No transaction is open while the shop's server is called. An HTTP failure never raises to Dramatiq: the
attempt is recorded and the retry is this delivery's own delayed message (and if that is lost, the reaper's
pass sends it again). Only a database or broker failure raises, for Dramatiq to retry.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import UTC, datetime

import structlog

from models.db import transaction
from pipeline import metrics, url_guard, webhook_delivery, webhook_store
from pipeline.config import Settings
from workers.enqueue import send_webhook

log = structlog.get_logger("orderflow.webhooks")
CLAIM_MARGIN_S = 30.0  # a claim outlives the attempt's timeout by this much


def deliver(settings: Settings, delivery_id: uuid.UUID) -> str:
    """Attempt the delivery once if it is due; answers what became of it (for logs and tests)."""
    assert settings.database_url
    hold_s = settings.webhook_timeout_s * 4 + CLAIM_MARGIN_S  # connect, write, read phases each time out
    with transaction(settings.database_url) as connection:
        claimed = webhook_store.claim(connection, delivery_id, hold_s)
    if isinstance(claimed, str):
        if claimed == "endpoint_disabled":
            metrics.WEBHOOK_DELIVERIES.labels("skipped").inc()
        log.debug("webhook.not_sent", delivery_id=str(delivery_id), why=claimed)
        return claimed
    structlog.contextvars.bind_contextvars(
        order_id=str(claimed.order_id), event_id=str(claimed.event_id), delivery_id=str(delivery_id)
    )
    try:
        attempt = _attempt(settings, claimed)
    except Exception as error:  # a bug on our side counts as a failed attempt, never as a claim held to its end
        log.exception("webhook.attempt_crashed")
        attempt = webhook_delivery.Attempt(datetime.now(UTC), 0, None, f"internal error: {error!r}"[:500])
    retry_in_s = 0.0
    if not attempt.delivered:
        retry_in_s = webhook_delivery.backoff_s(
            claimed.attempts + 1, settings.webhook_backoff_base_s, settings.webhook_backoff_cap_s
        )
    try:
        settled = _settle(settings.database_url, claimed, attempt, retry_in_s, settings.webhook_disable_after_s)
    except Exception:  # Postgres away: give the claim back so the retry of this message (or the reaper) can send it
        with suppress(Exception), transaction(settings.database_url) as connection:
            webhook_store.release(connection, claimed.delivery_id)
        raise
    _after_commit(claimed, attempt, settled)
    return settled.status


def _settle(
    database_url: str,
    claimed: webhook_store.Claim,
    attempt: webhook_delivery.Attempt,
    retry_in_s: float,
    disable_after_s: float,
) -> webhook_store.Settled:
    with transaction(database_url) as connection:
        return webhook_store.settle(
            connection,
            claimed,
            started_at=attempt.started_at,
            latency_ms=attempt.latency_ms,
            response_code=attempt.response_code,
            error=attempt.error,
            delivered=attempt.delivered,
            retry_in_s=retry_in_s,
            disable_after_s=disable_after_s,
        )


def _attempt(settings: Settings, claimed: webhook_store.Claim) -> webhook_delivery.Attempt:
    """The POST, or a refused one (recorded like a failed attempt) when the URL no longer passes the guard."""
    try:
        target = url_guard.check(
            claimed.url, allow_http=settings.webhook_allow_http, allowed_hosts=settings.webhook_allowed_hosts
        )
    except url_guard.UnsafeUrl as refused:
        metrics.WEBHOOK_DELIVERIES.labels("refused").inc()
        log.warning("webhook.url_refused", url=claimed.url, reason=str(refused))
        return webhook_delivery.Attempt(datetime.now(UTC), 0, None, f"refused: {refused}"[:500])
    return webhook_delivery.post(
        target,
        claimed.secret,
        str(claimed.event_id),
        webhook_delivery.body_of(claimed.payload),
        timeout_s=settings.webhook_timeout_s,
        max_response_bytes=settings.webhook_max_response_bytes,
    )


def _after_commit(
    claimed: webhook_store.Claim, attempt: webhook_delivery.Attempt, settled: webhook_store.Settled
) -> None:
    outcome = "delivered" if attempt.delivered else "retrying" if settled.status == "pending" else settled.status
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    fields = {
        "event_type": claimed.event_type,
        "endpoint_id": str(claimed.endpoint_id),
        "attempt": settled.attempt,
        "response_code": attempt.response_code,
        "latency_ms": attempt.latency_ms,
    }
    if attempt.delivered:
        log.info("webhook.delivered", **fields)
    else:
        log.warning(
            "webhook.attempt_failed", outcome=outcome, error=attempt.error, retry_in_s=settled.retry_in_s, **fields
        )
    if settled.endpoint_disabled:
        metrics.WEBHOOK_ENDPOINTS_AUTO_DISABLED.inc()
        log.error("webhook.endpoint_disabled", endpoint_id=str(claimed.endpoint_id), error=attempt.error)
    if settled.retry_in_s is not None:
        send_webhook(claimed.delivery_id, delay_ms=int(settled.retry_in_s * 1000))
    if settled.next_in_line is not None:
        send_webhook(settled.next_in_line)

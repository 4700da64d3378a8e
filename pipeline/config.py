"""All configuration, read from the environment in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.saga import BY_NAME, UNDO_ORDER, Retry, retry_of

# Keys that only the loopback Stripe server accepts; refused when talking to the real Stripe.
LOCAL_STRIPE_KEY = "sk_test_orderflow_local"
LOCAL_CARRIER_KEY = "ck_test_orderflow_local"
# What an e-mail template may name (string.Template): $total is in major units ("37.50"), $reason is the
# cancellation's code (empty in a confirmation), $lines the number of order lines.
MAIL_FIELDS = frozenset({"order_id", "user_id", "total", "currency", "lines", "reason"})
MAIL_TEMPLATE_FIELDS = tuple(
    f"mail_{kind}_{part}" for kind in ("confirmation", "cancellation") for part in ("subject", "text", "html")
)


class Settings(BaseSettings):
    """Every knob of orderflow; environment variables use the upper-case field name."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Unset URLs mean "start the embedded servers under stack_dir" (the dev stack's, orderflow[local]).
    database_url: str | None = None
    redis_url: str | None = None
    # The local stack's folder: the embedded servers' data, its signing secret, the demo's and benches' logs.
    stack_dir: Path = Field(default_factory=lambda: Path.cwd() / ".localstack")

    stripe_api_key: SecretStr = SecretStr(LOCAL_STRIPE_KEY)
    stripe_api_base: str | None = None
    stripe_timeout_s: float = 10.0
    stripe_webhook_secret: SecretStr | None = None

    jwt_secrets: list[SecretStr] = []
    # When set, every token must name this audience (`aud`) / issuer (`iss`), and minted tokens carry them.
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    # The carrier's HTTP API (the local carrier, scripts/fake_carrier, in the local stack and the tests).
    carrier_api_base: str | None = None
    carrier_api_key: SecretStr = SecretStr(LOCAL_CARRIER_KEY)
    carrier_timeout_s: float = 10.0
    # A revoked or rotated provider key is retried this long apart, without cancelling anyone's order.
    provider_auth_retry_s: float = 60.0

    # Fault injection in the local notifier (fraction of calls that fail transiently).
    notify_fault_rate: float = 0.0

    # Customer e-mail: "local" records each message in local_deliveries; "smtp" sends it through smtp_host
    # (README, E-mail). A worker with NOTIFIER=smtp and no SMTP_HOST refuses to start.
    notifier: Literal["local", "smtp"] = "local"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # The socket timeout of every SMTP operation (connect, each command, the message).
    smtp_timeout_s: float = 10.0
    mail_from: str = "orders@orderflow.localhost"
    mail_confirmation_subject: str = "Your order $order_id is confirmed"
    mail_confirmation_text: str = (
        "Thank you for your order.\n\nOrder: $order_id\nItems: $lines\nTotal: $total $currency\n\n"
        "We will let you know when it ships.\n"
    )
    mail_confirmation_html: str = (
        "<p>Thank you for your order.</p><p>Order: <b>$order_id</b><br>Items: $lines<br>"
        "Total: $total $currency</p><p>We will let you know when it ships.</p>"
    )
    mail_cancellation_subject: str = "Your order $order_id is cancelled"
    mail_cancellation_text: str = (
        "Your order $order_id was cancelled ($reason).\n\nAny payment of $total $currency is refunded.\n"
    )
    mail_cancellation_html: str = (
        "<p>Your order <b>$order_id</b> was cancelled ($reason).</p><p>Any payment of $total $currency is refunded.</p>"
    )

    # Per-actor retry policy overriding the saga table, e.g. STEP_RETRIES='{"charge_payment": {"max_retries": 12,
    # "min_backoff_ms": 1000, "max_backoff_ms": 60000}}' for a payment provider known to have long outages.
    step_retries: dict[str, Retry] = {}

    # Crash recovery: a live order whose step has not progressed for this long is re-driven, so an order
    # whose worker died resumes within step_lease_s + reaper_interval_s (the 30 s recovery objective).
    step_lease_s: float = 20.0
    reaper_interval_s: float = 2.0
    # Each re-drive of the same step without progress doubles its lease (up to 8x); after this many the
    # message is taken for poison (it kills its worker) and the order is compensated or parked.
    max_redeliveries: int = 5
    # Stock held this long by an order that has not been charged is released through compensation.
    reservation_ttl_s: float = 900.0
    reaper_metrics_port: int = 9192
    # The API's /metrics has its own port (0 = off), never the public API port: it names every route and rate.
    api_metrics_port: int = 9190
    # Where metrics endpoints listen: loopback for the local stack, 0.0.0.0 in a container.
    metrics_host: str = "127.0.0.1"

    # Intake limits.
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    # Failed authentications (401s) per source address, checked before any token is verified. A shop with a bad
    # token sees its error 20 times at once and then every 6 s; a key guesser gets ~14,400 tries a day per
    # address against a 256-bit key. The burst leaves room for a few clients behind one NAT rotating keys.
    auth_failures_per_min: float = 10.0
    auth_failures_burst: int = 20
    max_lines_per_order: int = 50
    max_quantity_per_line: int = 1000
    max_body_bytes: int = 64 * 1024
    # Routes under /v1/webhooks/ only: Stripe events can be several hundred KB, and one refused with 413 is
    # refused again on every redelivery, so it would be lost.
    max_webhook_body_bytes: int = 1024 * 1024

    # A hung server (frozen, swapping, partitioned) accepts connections and never answers, so only our own
    # clocks bound a request. Intake waits this long for Postgres (pool checkout and transaction), then answers
    # 503 NOT_READY; a transaction still in flight may commit later, and then its saga starts and the client's
    # retry with the same Idempotency-Key replays it. Under the 5 s a client waits, with room for the Redis calls.
    intake_db_budget_s: float = 3.0
    # The rate limiter lets a request through when Redis does not answer within this, so a hung Redis costs a
    # request a fraction of its 2 s budget (one round trip per request checks the address and the client).
    rate_limit_timeout_s: float = 0.25
    # Socket (and connect) timeout of the broker's Redis client, in the API and the workers. A hung Redis fails
    # an enqueue after this long: intake still answers 201 (the order's lease brings it back), a worker's consumer
    # reconnects. Dramatiq's Redis calls are short Lua scripts that never block server-side, so 1 s is ample.
    broker_socket_timeout_s: float = 1.0

    # Shops' webhooks (pipeline/url_guard.py, workers/webhooks/): URLs are untrusted. http only when allowed; a host
    # resolving to a loopback, private, link-local or metadata address is refused unless named here (by host
    # name or address; the local stack and the tests name 127.0.0.1 and localhost).
    webhook_allow_http: bool = False
    webhook_allowed_hosts: list[str] = []
    webhook_timeout_s: float = 10.0
    webhook_max_response_bytes: int = 4096
    # Retries: exponential from base to cap with full jitter, for up to retry_for_s after the first attempt.
    webhook_retry_for_s: float = 259200.0
    webhook_backoff_base_s: float = 10.0
    webhook_backoff_cap_s: float = 3600.0
    # An endpoint whose every attempt has failed for this long is disabled (and flagged).
    webhook_disable_after_s: float = 86400.0
    # A due delivery with no send for this long has lost its message: the reaper's pass sends it again.
    webhook_redrive_after_s: float = 60.0
    webhook_fanout_batch: int = 500
    # Retention: the reaper deletes rows older than these, oldest first, in small batches that skip locked rows
    # (every retention_interval_s). 0 keeps them for ever. Idempotency keys: 24 h, as Stripe keeps its own; a
    # retry with the same key after that is a new order. Stripe event ids: Stripe redelivers for up to 3 days.
    # Order events: the pull feed serves 30 days, as Stripe's /v1/events does (with their deliveries; never
    # an event still pending delivery). Local providers' records: the local stack's, 30 days. Timelines
    # (saga_steps) are kept with their orders.
    retention_interval_s: float = 300.0
    retention_batch: int = 500
    idempotency_key_ttl_s: float = 86400.0
    stripe_event_ttl_s: float = 2592000.0
    order_event_ttl_s: float = 2592000.0
    local_delivery_ttl_s: float = 2592000.0
    # The reaper's kept-money net re-reads the payments and refunds changed in this window (7 days); a change
    # older than that is what `orderctl audit` reports as "cancelled order kept money".
    kept_money_lookback_s: float = Field(default=604800.0, gt=0)
    # The operator console (/console): how long a sign-in lasts (at most as long as the token signed in with), and
    # whether its cookie is Secure (sent over HTTPS only). Set it behind TLS; it is always Secure on an https URL.
    console_session_ttl_s: int = Field(default=28800, ge=60)
    console_secure_cookie: bool = False

    @field_validator(
        "database_url",
        "redis_url",
        "stripe_api_base",
        "carrier_api_base",
        "jwt_audience",
        "jwt_issuer",
        "smtp_host",
        "smtp_username",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator(*MAIL_TEMPLATE_FIELDS)
    @classmethod
    def _known_mail_fields(cls, value: str) -> str:
        template = Template(value)
        unknown = set(template.get_identifiers()) - MAIL_FIELDS
        if not template.is_valid() or unknown:
            raise ValueError(f"a mail template may name only ${', $'.join(sorted(MAIL_FIELDS))} (a bare $ is $$)")
        return value

    @field_validator("step_retries")
    @classmethod
    def _known_actors(cls, value: dict[str, Retry]) -> dict[str, Retry]:
        unknown = set(value) - set(BY_NAME) - set(UNDO_ORDER)
        if unknown:
            raise ValueError(f"STEP_RETRIES names no saga step or compensation: {sorted(unknown)}")
        return value

    def retry_of(self, actor: str) -> Retry:
        """The retry policy of an actor: this configuration's override, else the saga table's."""
        return self.step_retries.get(actor) or retry_of(actor)

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str | None) -> str | None:
        # One driver everywhere: plain postgres URLs are read as psycopg 3.
        if value and value.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()

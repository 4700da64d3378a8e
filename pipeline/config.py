"""All configuration, read from the environment in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.saga import BY_NAME, UNDO_ORDER, Retry, retry_of

# Keys that only the loopback Stripe server accepts; refused when talking to the real Stripe.
LOCAL_STRIPE_KEY = "sk_test_orderflow_local"
LOCAL_CARRIER_KEY = "ck_test_orderflow_local"


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

    @field_validator(
        "database_url", "redis_url", "stripe_api_base", "carrier_api_base", "jwt_audience", "jwt_issuer", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

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

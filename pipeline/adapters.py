"""The outside world as the steps see it, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pipeline.carrier import HttpCarrier
from pipeline.config import LOCAL_STRIPE_KEY, Settings, get_settings
from pipeline.local_providers import LocalRecorder
from pipeline.notify import LocalNotifier, Notifier
from pipeline.payments import StripePayments
from pipeline.smtp_notifier import SmtpNotifier


@dataclass(frozen=True)
class Adapters:
    """Everything a step may call besides its own transaction."""

    database_url: str
    payments: StripePayments
    notifier: Notifier
    carrier: HttpCarrier
    lease_s: float


def check_adapter_settings(settings: Settings) -> None:
    """Refuse, with one line, settings the adapters cannot be built from (a worker calls this at start)."""
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set: start workers through `orderctl demo`, or set DATABASE_URL")
    if settings.stripe_api_base is None and settings.stripe_api_key.get_secret_value() == LOCAL_STRIPE_KEY:
        raise RuntimeError("STRIPE_API_KEY is the local placeholder but STRIPE_API_BASE is unset (real Stripe)")
    if settings.carrier_api_base is None:
        raise RuntimeError("CARRIER_API_BASE is not set: start workers through `orderctl demo`, or set it")
    if settings.notifier == "smtp" and settings.smtp_host is None:
        raise RuntimeError("NOTIFIER=smtp but SMTP_HOST is not set: set SMTP_HOST (and SMTP_PORT), or NOTIFIER=local")


def build_notifier(settings: Settings, database_url: str) -> Notifier:
    """The customer notifier NOTIFIER names: e-mail over SMTP, or the local recorder."""
    if settings.notifier == "smtp":
        return SmtpNotifier.from_settings(settings)
    return LocalNotifier(LocalRecorder(database_url, "notifier", settings.notify_fault_rate))


def build_adapters(settings: Settings) -> Adapters:
    """Production defaults from settings; tests build their own with other parameters."""
    check_adapter_settings(settings)
    assert settings.database_url is not None and settings.carrier_api_base is not None
    return Adapters(
        database_url=settings.database_url,
        payments=StripePayments(
            settings.stripe_api_key.get_secret_value(), settings.stripe_api_base, settings.stripe_timeout_s
        ),
        notifier=build_notifier(settings, settings.database_url),
        carrier=HttpCarrier(
            settings.carrier_api_base, settings.carrier_api_key.get_secret_value(), settings.carrier_timeout_s
        ),
        lease_s=settings.step_lease_s,
    )


@lru_cache(maxsize=1)
def process_adapters() -> Adapters:
    """The adapters of this worker process."""
    return build_adapters(get_settings())

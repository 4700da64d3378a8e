"""The outside world as the steps see it, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pipeline.carrier import HttpCarrier
from pipeline.config import LOCAL_STRIPE_KEY, Settings, get_settings
from pipeline.local_providers import LocalRecorder
from pipeline.notify import LocalNotifier, Notifier
from pipeline.payments import StripePayments


@dataclass(frozen=True)
class Adapters:
    """Everything a step may call besides its own transaction."""

    database_url: str
    payments: StripePayments
    notifier: Notifier
    carrier: HttpCarrier
    lease_s: float


def build_adapters(settings: Settings) -> Adapters:
    """Production defaults from settings; tests build their own with other parameters."""
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set: start workers through `orderctl demo`, or set DATABASE_URL")
    key = settings.stripe_api_key.get_secret_value()
    if settings.stripe_api_base is None and key == LOCAL_STRIPE_KEY:
        raise RuntimeError("STRIPE_API_KEY is the local placeholder but STRIPE_API_BASE is unset (real Stripe)")
    if settings.carrier_api_base is None:
        raise RuntimeError("CARRIER_API_BASE is not set: start workers through `orderctl demo`, or set it")
    return Adapters(
        database_url=settings.database_url,
        payments=StripePayments(key, settings.stripe_api_base, settings.stripe_timeout_s),
        notifier=LocalNotifier(LocalRecorder(settings.database_url, "notifier", settings.notify_fault_rate)),
        carrier=HttpCarrier(
            settings.carrier_api_base, settings.carrier_api_key.get_secret_value(), settings.carrier_timeout_s
        ),
        lease_s=settings.step_lease_s,
    )


@lru_cache(maxsize=1)
def process_adapters() -> Adapters:
    """The adapters of this worker process."""
    return build_adapters(get_settings())

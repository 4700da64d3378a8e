"""The smallest total the payment provider charges, per currency: intake refuses orders below it.

Stripe refuses a PaymentIntent under its minimum charge (`amount_too_small`), so such an order could never be
paid. These are the amounts of Stripe's "Minimum and maximum charge amounts" table
(https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts), in minor units as the API sends them
(JPY is zero-decimal: 50 is ¥50; HUF is charged with two decimals: 17500 is 175.00 Ft).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

STRIPE_MINIMUMS: Mapping[str, int] = MappingProxyType({
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500, "DKK": 250,
    "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000, "MYR": 200, "NOK": 300,
    "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000,
})  # fmt: skip
# Intake takes any ISO 4217 code. For the others Stripe documents only "$0.50 US or equivalent", which needs an
# exchange rate; 50 minor units is at or under that equivalent for nearly every such currency, so this floor
# refuses what Stripe surely refuses (zero above all) and leaves the rest to Stripe.
FALLBACK_MINIMUM = 50


def minimum_charge(currency: str) -> int:
    """The smallest total, in minor units, that can be charged in `currency`."""
    return STRIPE_MINIMUMS.get(currency.upper(), FALLBACK_MINIMUM)

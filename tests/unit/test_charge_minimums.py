"""Stripe's minimum charge per currency, in minor units, as intake applies it."""

from __future__ import annotations

import pytest

from api.charge_minimums import FALLBACK_MINIMUM, STRIPE_MINIMUMS, minimum_charge

# From Stripe's "Minimum and maximum charge amounts" table (docs.stripe.com/currencies).
DOCUMENTED = {
    "USD": 50,
    "AED": 200,
    "AUD": 50,
    "BGN": 100,
    "BRL": 50,
    "CAD": 50,
    "CHF": 50,
    "CZK": 1500,
    "DKK": 250,
    "EUR": 50,
    "GBP": 30,
    "HKD": 400,
    "HUF": 17500,
    "INR": 50,
    "JPY": 50,
    "MXN": 1000,
    "MYR": 200,
    "NOK": 300,
    "NZD": 50,
    "PLN": 200,
    "RON": 200,
    "SEK": 300,
    "SGD": 50,
    "THB": 1000,
}


@pytest.mark.parametrize("currency", sorted(DOCUMENTED))
def test_each_documented_currency_has_stripes_minimum_in_minor_units(currency: str) -> None:
    assert minimum_charge(currency) == DOCUMENTED[currency]


def test_the_table_holds_exactly_the_documented_currencies() -> None:
    assert dict(STRIPE_MINIMUMS) == DOCUMENTED


@pytest.mark.parametrize("currency", ["ZAR", "KRW", "XYZ"])
def test_a_currency_stripe_lists_no_minimum_for_gets_the_fallback_of_fifty_minor_units(currency: str) -> None:
    assert minimum_charge(currency) == FALLBACK_MINIMUM == 50


def test_the_lookup_ignores_the_case_of_the_currency_code() -> None:
    assert minimum_charge("gbp") == 30

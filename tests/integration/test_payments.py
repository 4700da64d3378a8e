"""StripePayments against the loopback Stripe, through the real SDK: charges, declines, faults, refunds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.errors import PaymentDeclined, PaymentInDoubt, PaymentMisconfigured, TransientError
from pipeline.payments import Charge, StripePayments
from scripts.fake_stripe import FakeStripeServer

API_KEY = "sk_test_orderflow"


@pytest.fixture
def payments(stripe_server: FakeStripeServer) -> Iterator[StripePayments]:
    with StripePayments(API_KEY, stripe_server.url, timeout_s=2.0) as adapter:
        yield adapter


def order_id() -> str:
    return f"order-{uuid.uuid4()}"


def charge(payments: StripePayments, order: str, *, pm: str = "pm_card_visa", amount: int = 2500) -> Charge:
    return payments.charge(
        order_id=order, amount_cents=amount, currency="usd", payment_method=pm, idempotency_key=f"{order}:charge"
    )


def test_a_good_card_is_charged_and_the_intent_succeeds(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    order = order_id()
    result = charge(payments, order)
    assert result.status == "succeeded"
    assert (result.amount_cents, result.currency) == (2500, "usd")
    [entry] = stripe_server.ledger()
    assert entry["id"] == result.intent_id
    assert entry["metadata"] == {"order_id": order}
    assert entry["amount_received"] == 2500


@pytest.mark.parametrize(
    ("payment_method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ],
)
def test_a_declined_card_raises_payment_declined_with_its_code(
    payments: StripePayments, stripe_server: FakeStripeServer, payment_method: str, decline_code: str
) -> None:
    with pytest.raises(PaymentDeclined) as caught:
        charge(payments, order_id(), pm=payment_method)
    assert caught.value.details["decline_code"] == decline_code
    [entry] = stripe_server.ledger()
    assert caught.value.details["intent_id"] == entry["id"]
    assert entry["status"] == "requires_payment_method"
    assert entry["amount_received"] == 0


def test_charging_twice_with_the_same_key_returns_the_same_intent_and_charges_once(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    order = order_id()
    first, second = charge(payments, order), charge(payments, order)
    assert first == second
    assert len(stripe_server.ledger()) == 1


def test_reusing_a_key_with_a_different_amount_is_a_misconfiguration(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    order = order_id()
    charge(payments, order, amount=2500)
    with pytest.raises(PaymentMisconfigured):
        charge(payments, order, amount=9900)
    assert [e["amount"] for e in stripe_server.ledger()] == [2500]


def test_an_unknown_payment_method_is_a_misconfiguration(payments: StripePayments) -> None:
    with pytest.raises(PaymentMisconfigured):
        charge(payments, order_id(), pm="pm_does_not_exist")


@pytest.mark.parametrize("fault", ["error_rate", "rate_limit_rate"])
def test_server_errors_and_rate_limits_are_transient_and_a_retry_with_the_same_key_charges_once(
    payments: StripePayments, stripe_server: FakeStripeServer, fault: str
) -> None:
    order = order_id()
    stripe_server.set_faults(**{fault: 1.0})
    with pytest.raises(TransientError) as caught:
        charge(payments, order)
    assert not isinstance(caught.value, PaymentInDoubt)
    assert stripe_server.ledger() == []
    stripe_server.set_faults(**{fault: 0.0})
    assert charge(payments, order).status == "succeeded"
    assert len(stripe_server.ledger()) == 1


def test_a_timed_out_charge_is_in_doubt_and_reconciliation_finds_it_without_a_second_charge(
    stripe_server: FakeStripeServer,
) -> None:
    order = order_id()
    stripe_server.set_faults(timeout_rate=1.0)
    with StripePayments(API_KEY, stripe_server.url, timeout_s=0.5) as impatient:
        with pytest.raises(PaymentInDoubt):
            charge(impatient, order)
        stripe_server.set_faults(timeout_rate=0.0)

        found = impatient.find_charge(order_id=order, intent_id=None)
        assert found is not None and found.status == "succeeded"
        assert charge(impatient, order) == found  # the retry replays the saved answer
    charged = [e for e in stripe_server.ledger() if e["metadata"] == {"order_id": order}]
    assert [e["status"] for e in charged] == ["succeeded"]


def test_find_charge_prefers_the_succeeded_intent_over_a_later_decline(payments: StripePayments) -> None:
    order = order_id()
    paid = charge(payments, order)
    with pytest.raises(PaymentDeclined):
        payments.charge(
            order_id=order,
            amount_cents=2500,
            currency="usd",
            payment_method="pm_card_chargeDeclined",
            idempotency_key=f"{order}:charge:2",
        )
    assert payments.find_charge(order_id=order, intent_id=None) == paid
    assert payments.find_charge(order_id=order, intent_id=paid.intent_id) == paid


def test_find_charge_returns_none_for_an_order_stripe_never_saw(payments: StripePayments) -> None:
    assert payments.find_charge(order_id=order_id(), intent_id=None) is None
    assert payments.find_charge(order_id=order_id(), intent_id="pi_unknown") is None


def test_a_refund_succeeds_and_the_ledger_shows_it(payments: StripePayments, stripe_server: FakeStripeServer) -> None:
    paid = charge(payments, order_id())
    refund = payments.refund(intent_id=paid.intent_id, amount_cents=2500, idempotency_key="r1")
    assert (refund.status, refund.amount_cents) == ("succeeded", 2500)
    [entry] = stripe_server.ledger()
    assert entry["amount_refunded"] == 2500
    assert entry["refunds"] == [refund.refund_id]


def test_refunding_twice_with_the_same_key_is_idempotent(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    first = payments.refund(intent_id=paid.intent_id, amount_cents=1000, idempotency_key="r1")
    second = payments.refund(intent_id=paid.intent_id, amount_cents=1000, idempotency_key="r1")
    assert first == second
    assert stripe_server.ledger()[0]["amount_refunded"] == 1000


def test_refunding_an_already_refunded_charge_with_a_new_key_does_not_raise(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    first = payments.refund(intent_id=paid.intent_id, amount_cents=2500, idempotency_key="r1")
    again = payments.refund(intent_id=paid.intent_id, amount_cents=2500, idempotency_key="r2")
    assert again == first
    assert stripe_server.ledger()[0]["amount_refunded"] == 2500


def test_a_refund_that_hits_a_server_error_is_transient(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    stripe_server.set_faults(error_rate=1.0)
    with pytest.raises(TransientError):
        payments.refund(intent_id=paid.intent_id, amount_cents=2500, idempotency_key="r1")


@pytest.mark.parametrize("api_key", ["", "sk_live_not_for_tests", "pk_test_publishable"])
def test_a_missing_or_wrong_api_key_is_a_misconfiguration(stripe_server: FakeStripeServer, api_key: str) -> None:
    with (
        StripePayments(api_key, stripe_server.url, timeout_s=2.0) as payments,
        pytest.raises(PaymentMisconfigured) as caught,
    ):
        charge(payments, order_id())
    assert caught.value.details["http_status"] == 401


def test_an_unreachable_stripe_leaves_a_charge_in_doubt_and_a_lookup_transient() -> None:
    with StripePayments(API_KEY, "http://127.0.0.1:9", timeout_s=0.5) as payments:
        with pytest.raises(PaymentInDoubt):
            charge(payments, order_id())
        with pytest.raises(TransientError) as caught:
            payments.find_charge(order_id=order_id(), intent_id=None)
    assert not isinstance(caught.value, PaymentInDoubt)

"""StripePayments against the loopback Stripe, through the real SDK: charges, declines, faults, refunds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.errors import PaymentDeclined, PaymentInDoubt, PaymentMisconfigured, ProviderUnauthorized, TransientError
from pipeline.payment_types import Charge, Refund
from pipeline.payments import StripePayments
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


def test_a_timed_out_charge_is_in_doubt_and_resolving_it_replays_the_original_without_a_second_charge(
    stripe_server: FakeStripeServer,
) -> None:
    order = order_id()
    stripe_server.set_faults(timeout_rate=1.0, search_lag_s=600)  # search would not see it for ten minutes
    with StripePayments(API_KEY, stripe_server.url, timeout_s=0.5) as impatient:
        with pytest.raises(PaymentInDoubt):
            charge(impatient, order)
        stripe_server.set_faults(timeout_rate=0.0)

        assert impatient.find_charge(order_id=order) is None  # the lag: search proves nothing
        found = resolve(impatient, order)
        assert found is not None and found.status == "succeeded"
        assert charge(impatient, order) == found  # the retry replays the saved answer
    charged = [e for e in stripe_server.ledger() if e["metadata"] == {"order_id": order}]
    assert [e["status"] for e in charged] == ["succeeded"]


def resolve(payments: StripePayments, order: str) -> Charge | None:
    return payments.resolve_charge(
        order_id=order,
        amount_cents=2500,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key=f"{order}:charge",
    )


def test_resolving_a_charge_that_never_arrived_charges_nobody_and_blocks_a_late_copy(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    order = order_id()

    assert resolve(payments, order) is None
    [placeholder] = stripe_server.ledger()
    assert (placeholder["status"], placeholder["amount_received"]) == ("canceled", 0)
    with pytest.raises(PaymentMisconfigured):  # the original arriving late meets a used key: refused, not charged
        charge(payments, order)
    assert [e["status"] for e in stripe_server.ledger()] == ["canceled"]


def test_resolving_a_declined_charge_says_no_money_was_taken(payments: StripePayments) -> None:
    order = order_id()
    with pytest.raises(PaymentDeclined):
        charge(payments, order, pm="pm_card_chargeDeclined")

    assert (
        payments.resolve_charge(
            order_id=order,
            amount_cents=2500,
            currency="usd",
            payment_method="pm_card_chargeDeclined",
            idempotency_key=f"{order}:charge",
        )
        is None
    )


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
    assert payments.find_charge(order_id=order) == paid
    assert payments.retrieve(paid.intent_id) == paid


def test_find_charge_returns_none_for_an_order_stripe_never_saw(payments: StripePayments) -> None:
    assert payments.find_charge(order_id=order_id()) is None


def refund(payments: StripePayments, intent_id: str, amount: int, key: str) -> Refund:
    return payments.refund(intent_id=intent_id, amount_cents=amount, order_id="o-1", idempotency_key=key)


def test_a_refund_succeeds_is_tagged_as_ours_and_the_ledger_shows_it(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    made = refund(payments, paid.intent_id, 2500, "r1")
    assert (made.status, made.amount_cents, made.ours) == ("succeeded", 2500, True)
    [entry] = stripe_server.ledger()
    assert entry["amount_refunded"] == 2500
    assert [r["id"] for r in entry["refunds"]] == [made.refund_id]
    assert payments.refunds_of(paid.intent_id) == [made]


def test_refunding_twice_with_the_same_key_is_idempotent(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    first = refund(payments, paid.intent_id, 1000, "r1")
    second = refund(payments, paid.intent_id, 1000, "r1")
    assert first == second
    assert stripe_server.ledger()[0]["amount_refunded"] == 1000


def test_refunding_more_than_is_left_is_transient_so_the_step_looks_again(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    stripe_server.refund_from_dashboard(paid.intent_id, amount=1000)
    with pytest.raises(TransientError):
        refund(payments, paid.intent_id, 2500, "r1")
    assert sorted(r.ours for r in payments.refunds_of(paid.intent_id)) == [False]


def test_a_refund_that_hits_a_server_error_is_transient(
    payments: StripePayments, stripe_server: FakeStripeServer
) -> None:
    paid = charge(payments, order_id())
    stripe_server.set_faults(error_rate=1.0)
    with pytest.raises(TransientError):
        refund(payments, paid.intent_id, 2500, "r1")


@pytest.mark.parametrize("api_key", ["", "sk_live_not_for_tests", "pk_test_publishable"])
def test_a_missing_or_wrong_api_key_is_our_misconfiguration_retried_not_the_orders_fault(
    stripe_server: FakeStripeServer, api_key: str
) -> None:
    with (
        StripePayments(api_key, stripe_server.url, timeout_s=2.0) as payments,
        pytest.raises(ProviderUnauthorized) as caught,
    ):
        charge(payments, order_id())
    assert caught.value.details["http_status"] == 401


def test_an_unreachable_stripe_leaves_a_charge_in_doubt_and_a_lookup_transient() -> None:
    with StripePayments(API_KEY, "http://127.0.0.1:9", timeout_s=0.5) as payments:
        with pytest.raises(PaymentInDoubt):
            charge(payments, order_id())
        with pytest.raises(TransientError) as caught:
            payments.find_charge(order_id=order_id())
    assert not isinstance(caught.value, PaymentInDoubt)

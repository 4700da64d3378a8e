"""The customer-safe message of each error code, and the fallback for anything else."""

from __future__ import annotations

import pytest

from api.public_errors import FALLBACK_MESSAGE, PUBLIC_MESSAGES, public_last_error, public_message
from pipeline import errors

SAGA_CODES = [
    "OUT_OF_STOCK",
    "PAYMENT_DECLINED",
    "SHIPPING_REJECTED",
    "RETRIES_EXHAUSTED",
    "REDELIVERY_LIMIT",
    "RESERVATION_EXPIRED",
    "PAYMENT_IN_DOUBT",
    "PAYMENT_REJECTED",
    "TRANSIENT_ERROR",
    "COMPENSATION_FAILED",
    "ILLEGAL_TRANSITION",
    "CANCELLED_BY_REQUEST",
    "CANCELLED_BY_OPERATOR",
    "PAYMENT_REFUNDED",
    "PAYMENT_DISPUTED",
    "PAYMENT_DISPUTE_LOST",
    "PAYMENT_PENDING",
    "PAYMENT_PROVIDER_AUTH",
    "REFUND_PENDING",
    "REFUND_FAILED",
    "SHIPMENT_IN_DOUBT",
    "SHIPMENT_PICKED_UP",
    "CARRIER_REJECTED",
    "DATABASE_ERROR",
    "INTERNAL_ERROR",
]
# Bases that name no failure of their own, and errors the API answers directly (never in a timeline).
NOT_IN_TIMELINES = {"PIPELINE_ERROR", "PERMANENT_ERROR", "ORDER_NOT_FOUND", "ORDER_ALREADY_SHIPPED"}


def pipeline_codes() -> set[str]:
    found, todo = set(), [errors.PipelineError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found - NOT_IN_TIMELINES


@pytest.mark.parametrize("code", SAGA_CODES)
def test_each_saga_code_has_its_own_short_sentence(code: str) -> None:
    message = public_message(code)
    assert message != FALLBACK_MESSAGE
    assert message[0].isupper() and message.endswith(".") and len(message) <= 80


def test_the_out_of_stock_declined_and_undeliverable_messages_read_as_specified() -> None:
    assert public_message("OUT_OF_STOCK") == "Not enough stock for an item in the order."
    assert public_message("PAYMENT_DECLINED") == "The payment was declined."
    assert public_message("SHIPPING_REJECTED") == "The carrier cannot deliver to this address."


def test_every_code_the_pipeline_raises_has_a_safe_message() -> None:
    assert pipeline_codes() - set(PUBLIC_MESSAGES) == set()


@pytest.mark.parametrize("code", ["IntegrityError", "OperationalError", "KeyError", "SOMETHING_NEW", "", None])
def test_an_unknown_code_or_an_exception_class_name_gets_the_fallback(code: str | None) -> None:
    assert public_message(code) == FALLBACK_MESSAGE == "The step failed; the shop can look up the details."


@pytest.mark.parametrize(
    "last_error, cancel_reason, code",
    [
        ("PAYMENT_DECLINED: Your card was declined.", None, "PAYMENT_DECLINED"),
        ("PAYMENT_DECLINED", None, "PAYMENT_DECLINED"),
        ("refund_payment: TRANSIENT_ERROR: provider down", "PAYMENT_DECLINED", "TRANSIENT_ERROR"),
        ("Your card was declined.", "PAYMENT_DECLINED", "PAYMENT_DECLINED"),
        ("IntegrityError: duplicate key value violates unique constraint", None, None),
        ("OUT_OF_STOCKS are low", None, None),
        ("reserve_stock: kept failing", "NOT_A_CODE", None),
    ],
)
def test_last_error_shows_the_message_of_the_code_it_starts_with_else_its_reason_else_the_fallback(
    last_error: str, cancel_reason: str | None, code: str | None
) -> None:
    assert public_last_error(last_error, cancel_reason) == (public_message(code) if code else FALLBACK_MESSAGE)


def test_no_last_error_stays_none() -> None:
    assert public_last_error(None, "CANCELLED_BY_REQUEST") is None

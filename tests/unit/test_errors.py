"""The error taxonomy: one small hierarchy, one machine code per class, transient or permanent."""

from __future__ import annotations

import inspect

import pytest

from pipeline import errors
from pipeline.errors import (
    CompensationFailed,
    IllegalTransition,
    OutOfStock,
    PaymentDeclined,
    PaymentInDoubt,
    PermanentError,
    PipelineError,
    TransientError,
    is_transient,
)

ALL_CLASSES = [
    value
    for value in vars(errors).values()
    if inspect.isclass(value) and issubclass(value, PipelineError) and value.__module__ == errors.__name__
]
KINDS = (TransientError, PermanentError)
# CompensationFailed is neither: retrying is the compensation's own business (Dramatiq retries it), and a failed undo
# cannot itself be compensated; it parks the order in needs_attention for an operator.
NEITHER_KIND = {PipelineError, CompensationFailed}
CONCRETE = [cls for cls in ALL_CLASSES if cls not in (PipelineError, *KINDS)]


def test_the_module_defines_the_hierarchy_the_design_names() -> None:
    names = {cls.__name__ for cls in ALL_CLASSES}

    assert {"PipelineError", "TransientError", "PermanentError", "OutOfStock", "PaymentDeclined"} <= names
    assert {"InvalidAddress", "RetriesExhausted", "IllegalTransition", "CompensationFailed"} <= names


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_declares_its_own_upper_snake_case_code(cls: type[PipelineError]) -> None:
    code = vars(cls).get("code")

    assert isinstance(code, str)
    assert code.isupper() and code.replace("_", "").isalpha()


def test_no_two_error_classes_share_a_code() -> None:
    codes = [cls.code for cls in ALL_CLASSES]

    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("cls", [cls for cls in CONCRETE if cls not in NEITHER_KIND], ids=lambda cls: cls.__name__)
def test_every_concrete_error_is_either_transient_or_permanent_but_not_both(cls: type[PipelineError]) -> None:
    kinds = [kind for kind in KINDS if issubclass(cls, kind)]

    assert len(kinds) == 1


def test_a_failed_compensation_is_a_pipeline_error_that_is_neither_transient_nor_permanent() -> None:
    error = CompensationFailed("refund kept failing", order_id="o-1")

    assert isinstance(error, PipelineError)
    assert not isinstance(error, TransientError)
    assert not isinstance(error, PermanentError)
    assert not is_transient(error)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_has_a_one_line_docstring(cls: type[PipelineError]) -> None:
    doc = vars(cls).get("__doc__")

    assert doc and doc.strip()
    assert "\n" not in doc.strip()


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)
def test_is_transient_says_yes_exactly_for_the_transient_classes(cls: type[PipelineError]) -> None:
    error = cls("boom")

    assert is_transient(error) is issubclass(cls, TransientError)


@pytest.mark.parametrize("error", [ValueError("x"), TimeoutError(), ConnectionError(), KeyboardInterrupt()])
def test_an_error_we_did_not_classify_is_not_transient(error: BaseException) -> None:
    transient = is_transient(error)

    assert transient is False


def test_an_in_doubt_payment_is_transient_and_a_declined_one_is_permanent() -> None:
    in_doubt, declined = PaymentInDoubt("no answer"), PaymentDeclined("card declined")

    assert is_transient(in_doubt)
    assert not is_transient(declined)


def test_the_details_given_as_keywords_are_kept() -> None:
    error = OutOfStock("not enough mugs", product_id="p-1", requested=3, available=1)

    assert error.details == {"product_id": "p-1", "requested": 3, "available": 1}
    assert error.message == "not enough mugs"
    assert str(error) == "not enough mugs"


def test_an_error_without_a_message_falls_back_to_its_code() -> None:
    error = IllegalTransition()

    assert error.message == "ILLEGAL_TRANSITION"
    assert str(error) == "ILLEGAL_TRANSITION"
    assert error.details == {}


def test_an_error_can_be_raised_and_caught_as_its_kind() -> None:
    with pytest.raises(PermanentError) as raised:
        raise OutOfStock("gone", sku="mug")

    assert raised.value.code == "OUT_OF_STOCK"
    assert raised.value.details == {"sku": "mug"}

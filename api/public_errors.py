"""What the API says about a failed step: a short customer-safe sentence per error code, never the raw text.

The timeline's error_message and the order's last_error hold exception text (SQL, constraint names, row values,
provider answers) for operators, who read it through `orderctl`. The API shows the code and its sentence here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

FALLBACK_MESSAGE = "The step failed; the shop can look up the details."
PUBLIC_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "OUT_OF_STOCK": "Not enough stock for an item in the order.",
        "PAYMENT_DECLINED": "The payment was declined.",
        "PAYMENT_IN_DOUBT": "The payment's outcome is being confirmed with the provider.",
        "PAYMENT_PENDING": "The payment is still pending with the provider.",
        "PAYMENT_REJECTED": "The payment provider refused the request.",
        "PAYMENT_PROVIDER_AUTH": "The shop's payment setup needs attention.",
        "PAYMENT_REFUNDED": "The payment was refunded.",
        "PAYMENT_DISPUTED": "The payment is disputed.",
        "PAYMENT_DISPUTE_LOST": "The payment was taken back after a dispute.",
        "REFUND_PENDING": "The refund is being processed.",
        "REFUND_FAILED": "The refund could not be completed; the shop will follow up.",
        "SHIPPING_REJECTED": "The carrier cannot deliver to this address.",
        "CARRIER_REJECTED": "The carrier refused the shipment.",
        "SHIPMENT_IN_DOUBT": "The shipment's status is being confirmed with the carrier.",
        "SHIPMENT_PICKED_UP": "The carrier has already picked up the parcel.",
        "EMAIL_DEFERRED": "The e-mail to the customer is waiting to be sent.",
        "EMAIL_REJECTED": "The customer's e-mail address refused the message.",
        "EMAIL_PROVIDER_AUTH": "The shop's e-mail setup needs attention.",
        "RESERVATION_EXPIRED": "The stock reservation expired before the payment.",
        "RETRIES_EXHAUSTED": "The step kept failing and was given up.",
        "REDELIVERY_LIMIT": "The step could not be completed and was given up.",
        "TRANSIENT_ERROR": "A temporary problem interrupted the step.",
        "DATABASE_ERROR": "A problem in the shop's systems stopped the step.",
        "INTERNAL_ERROR": "The step hit an internal error.",
        "COMPENSATION_FAILED": "Undoing the order needs the shop's attention.",
        "ILLEGAL_TRANSITION": "The order was not in a state that allows this step.",
        "CANCELLED_BY_REQUEST": "The order was cancelled on request.",
        "CANCELLED_BY_OPERATOR": "The order was cancelled by the shop.",
    }
)
# How the saga writes last_error: "CODE: text", or "<compensation>: CODE: text" when an undo parks the order.
LEADING_CODE = re.compile(r"^(?:[a-z][a-z0-9_]*: )?([A-Z][A-Z0-9_]*)(?::|$)")


def public_message(code: str | None) -> str:
    """The code's sentence; the fallback for any other code (exception class names included)."""
    return PUBLIC_MESSAGES.get(code or "", FALLBACK_MESSAGE)


def public_last_error(last_error: str | None, cancel_reason: str | None) -> str | None:
    """The sentence of the code last_error starts with, else of the cancel reason recorded with it, else the fallback.

    A step that fails for good records its code as the cancel reason and its bare message as last_error.
    """
    if last_error is None:
        return None
    leading = LEADING_CODE.match(last_error)
    for code in (leading.group(1) if leading else None, cancel_reason):
        if code is not None and code in PUBLIC_MESSAGES:
            return PUBLIC_MESSAGES[code]
    return FALLBACK_MESSAGE

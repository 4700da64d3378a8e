"""The pipeline's error taxonomy: every failure is transient (retry) or permanent (compensate)."""

from __future__ import annotations

from typing import Any, ClassVar


class PipelineError(Exception):
    """Base of every error the saga knows how to classify."""

    code: ClassVar[str] = "PIPELINE_ERROR"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.details = details


class TransientError(PipelineError):
    """A failure that may succeed if tried again later (timeouts, 5xx, 429, lock conflicts)."""

    code = "TRANSIENT_ERROR"


class PermanentError(PipelineError):
    """A failure that no retry will fix; the saga compensates (or, with `parks`, holds the order for a person)."""

    code = "PERMANENT_ERROR"
    # True for failures a person must decide on before anything is undone (a disputed charge).
    parks: ClassVar[bool] = False


class OutOfStock(PermanentError):
    """A line asked for more than the available stock."""

    code = "OUT_OF_STOCK"


class PaymentDeclined(PermanentError):
    """The payment provider refused the charge (declined card, insufficient funds)."""

    code = "PAYMENT_DECLINED"


class PaymentInDoubt(TransientError):
    """A charge's outcome is unknown; it must be reconciled before anything is retried."""

    code = "PAYMENT_IN_DOUBT"


class PaymentPending(TransientError):
    """The provider holds the charge in a non-final state (`processing`); look again later."""

    code = "PAYMENT_PENDING"


class ProviderUnauthorized(TransientError):
    """The provider refused our credentials (401/403): we are misconfigured, the order is not at fault."""

    code = "PAYMENT_PROVIDER_AUTH"


class PaymentRefunded(PermanentError):
    """The charge was refunded in full outside the saga (dashboard, support) before the order shipped."""

    code = "PAYMENT_REFUNDED"


class PaymentDisputed(PermanentError):
    """The customer disputed the charge before the order shipped: an operator decides what happens."""

    code = "PAYMENT_DISPUTED"
    parks = True


class PaymentDisputeLost(PermanentError):
    """The bank took the charge back after a lost dispute: the order cannot ship."""

    code = "PAYMENT_DISPUTE_LOST"


class RefundPending(TransientError):
    """A refund exists but the provider has not reported it succeeded yet."""

    code = "REFUND_PENDING"


class RefundFailed(PermanentError):
    """The provider reports a refund failed: the customer has not got the money back."""

    code = "REFUND_FAILED"


class DatabaseBug(PermanentError):
    """A constraint violation or a malformed statement: a bug no retry fixes."""

    code = "DATABASE_ERROR"


class PaymentMisconfigured(PermanentError):
    """The provider rejected our request itself (bad key, bad parameters): no retry helps."""

    code = "PAYMENT_REJECTED"


class InvalidAddress(PermanentError):
    """The carrier refused the shipping address."""

    code = "SHIPPING_REJECTED"


class ShipmentInDoubt(TransientError):
    """The carrier may have accepted a shipment whose answer was lost; look it up by key before anything else."""

    code = "SHIPMENT_IN_DOUBT"


class CarrierRejected(PermanentError):
    """The carrier refused the request itself (bad parameters, unknown shipment): no retry helps."""

    code = "CARRIER_REJECTED"


class ShipmentPickedUp(PermanentError):
    """The carrier has picked the parcel up: the shipment can no longer be voided."""

    code = "SHIPMENT_PICKED_UP"


class EmailDeferred(TransientError):
    """The mail server answered 4xx (greylisting, a full queue): try the same message again later."""

    code = "EMAIL_DEFERRED"


class EmailRejected(PermanentError):
    """The mail server refused the message for good (5xx: no such mailbox, policy)."""

    code = "EMAIL_REJECTED"


class MailerUnauthorized(ProviderUnauthorized):
    """The mail server refused our SMTP login: we are misconfigured, the order is not at fault."""

    code = "EMAIL_PROVIDER_AUTH"


class RetriesExhausted(PermanentError):
    """A transient failure kept happening past the step's retry budget."""

    code = "RETRIES_EXHAUSTED"


class RedeliveryLimit(PermanentError):
    """A step was re-driven again and again without progress: its message may be killing its worker."""

    code = "REDELIVERY_LIMIT"


class ReservationExpired(PermanentError):
    """Stock was held longer than the reservation TTL without the order being charged."""

    code = "RESERVATION_EXPIRED"


class IllegalTransition(PermanentError):
    """An order was asked to move between two states the state machine does not connect."""

    code = "ILLEGAL_TRANSITION"


class CompensationFailed(PipelineError):
    """An undo step could not finish; an operator has to look at the order."""

    code = "COMPENSATION_FAILED"


class OrderNotFound(PermanentError):
    """No order has that id."""

    code = "ORDER_NOT_FOUND"


class OrderAlreadyShipped(PermanentError):
    """A shipped order cannot be cancelled or compensated."""

    code = "ORDER_ALREADY_SHIPPED"


def is_transient(error: BaseException) -> bool:
    """True when a retry may help: our transient errors, and nothing we cannot classify as such."""
    return isinstance(error, TransientError)

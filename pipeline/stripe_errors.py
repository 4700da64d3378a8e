"""Stripe's exceptions translated into the pipeline's taxonomy, at the boundary, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from pipeline.errors import PaymentDeclined, PaymentInDoubt, PaymentMisconfigured, ProviderUnauthorized, TransientError


@contextmanager
def stripe_errors(*, creates_charge: bool) -> Iterator[None]:
    """Translate stripe exceptions into the pipeline's taxonomy."""
    try:
        yield
    except stripe.CardError as e:
        intent = e.error.payment_intent if e.error else None
        raise PaymentDeclined(
            e.user_message or str(e),
            code=e.code,
            decline_code=e.error.decline_code if e.error else None,
            intent_id=intent.id if intent else None,
        ) from e
    except stripe.APIConnectionError as e:
        # The SDK cannot tell "never sent" from "sent, answer lost" (a read timeout, a dropped connection).
        # For a call that may have charged the card, assume the worst: the caller must resolve the charge
        # authoritatively before anything else. Refunds and reads are safe to retry as-is (same key / no effect).
        if creates_charge:
            raise PaymentInDoubt(f"outcome unknown: {e.user_message or e}") from e
        raise TransientError(f"could not reach Stripe: {e.user_message or e}") from e
    except stripe.RateLimitError as e:
        raise TransientError(f"rate limited by Stripe: {e.user_message or e}", http_status=e.http_status) from e
    except (stripe.AuthenticationError, stripe.PermissionError) as e:
        # A revoked or rotated key is our misconfiguration, not the order's fault: keep the order, alert a person.
        raise ProviderUnauthorized(e.user_message or str(e), http_status=e.http_status) from e
    except stripe.IdempotencyError as e:
        raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status) from e
    except stripe.InvalidRequestError as e:
        raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status, code=e.code) from e
    except stripe.StripeError as e:
        # 5xx, 409 lock conflicts and anything unclassified. A retry reuses the idempotency key, so it cannot charge
        # twice; note real Stripe saves a 5xx that happened mid-execution under the key and replays it.
        if e.http_status is not None and 400 <= e.http_status < 500 and e.http_status != 409:
            raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status) from e
        raise TransientError(f"Stripe error: {e.user_message or e}", http_status=e.http_status) from e

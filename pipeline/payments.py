"""Payments through the real `stripe` SDK: charge, reconcile and refund, with vendor errors mapped at the boundary."""

from __future__ import annotations

import stripe

from pipeline.errors import PaymentDeclined, TransientError
from pipeline.payment_types import ORIGIN, Charge, Refund
from pipeline.stripe_errors import stripe_errors
from pipeline.stripe_http import http_client


def _charge(intent: stripe.PaymentIntent) -> Charge:
    return Charge(intent.id, intent.status, intent.amount, intent.currency)


def _refund(refund: stripe.Refund) -> Refund:
    metadata: dict[str, str] = refund.metadata.to_dict() if refund.metadata else {}
    return Refund(
        refund.id,
        refund.status or "pending",
        refund.amount,
        metadata.get("origin") == ORIGIN,
        getattr(refund, "failure_reason", None),
    )


def _search_literal(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class StripePayments:
    """The saga's payment adapter; `api_base=None` talks to the real Stripe."""

    def __init__(self, api_key: str, api_base: str | None, timeout_s: float = 10.0) -> None:
        self._http = http_client(api_base, timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,  # retries belong to the saga (Dramatiq), always with the same idempotency key
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the HTTP session's connections (a later call opens new ones)."""
        self._http.close()

    def __enter__(self) -> StripePayments:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def charge(
        self, *, order_id: str, amount_cents: int, currency: str, payment_method: str, idempotency_key: str
    ) -> Charge:
        """Create and confirm a PaymentIntent tagged with the order id; a replay with the same key charges once."""
        with stripe_errors(creates_charge=True):
            intent = self._client.v1.payment_intents.create(
                params={
                    "amount": amount_cents,
                    "currency": currency,
                    "payment_method": payment_method,
                    "confirm": True,
                    # Server-side confirmation: no redirect-based methods, and fail rather than wait on 3-D Secure.
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "error_on_requires_action": True,
                    "metadata": {"order_id": order_id},
                },
                options={"idempotency_key": idempotency_key},
            )
        return _charge(intent)

    def retrieve(self, intent_id: str) -> Charge:
        """The intent as the provider holds it now (authoritative, unlike search)."""
        with stripe_errors(creates_charge=False):
            return _charge(self._client.v1.payment_intents.retrieve(intent_id))

    def resolve_charge(
        self, *, order_id: str, amount_cents: int, currency: str, payment_method: str, idempotency_key: str
    ) -> Charge | None:
        """The outcome of a charge whose answer was lost, without charging anyone; None when no money was taken.

        Search is eventually consistent, so its silence proves nothing. Instead this probes the idempotency key:
        a request with other parameters is refused (`idempotency_error`) if Stripe saved the original, and then
        the original is replayed, which answers its saved result and charges nothing new. If the key is free the
        original never arrived: the probe's unconfirmed intent is cancelled and holds the key from then on, so a
        late copy of the original is refused too. Stripe keeps keys for 24 hours; callers with older attempts
        use `find_charge`, whose index has long caught up by then.
        """
        probe = {"amount": amount_cents, "currency": currency, "metadata": {"order_id": order_id, "probe": "true"}}
        with stripe_errors(creates_charge=False):
            try:
                placeholder = self._client.v1.payment_intents.create(
                    params=probe,  # type: ignore[arg-type]
                    options={"idempotency_key": idempotency_key},
                )
            except stripe.IdempotencyError:
                placeholder = None
            if placeholder is not None:
                self._client.v1.payment_intents.cancel(placeholder.id)
                return None
        try:
            return self.charge(
                order_id=order_id,
                amount_cents=amount_cents,
                currency=currency,
                payment_method=payment_method,
                idempotency_key=idempotency_key,
            )
        except PaymentDeclined:
            return None

    def cancel(self, intent_id: str) -> Charge:
        """Cancel an intent that waits for the customer, so it can never succeed; answers its status after."""
        with stripe_errors(creates_charge=False):
            try:
                return _charge(self._client.v1.payment_intents.cancel(intent_id))
            except stripe.InvalidRequestError as e:
                if e.code != "payment_intent_unexpected_state":
                    raise
                return _charge(self._client.v1.payment_intents.retrieve(intent_id))  # it moved on meanwhile

    def find_charge(self, *, order_id: str) -> Charge | None:
        """Search the order's intents (eventually consistent: only for attempts older than the idempotency window)."""
        with stripe_errors(creates_charge=False):
            query = f"metadata['order_id']:{_search_literal(order_id)}"
            found = self._client.v1.payment_intents.search(params={"query": query, "limit": 100}).data
        if not found:
            return None
        latest = sorted(found, key=lambda i: i.created, reverse=True)
        return _charge(next((i for i in latest if i.status == "succeeded"), latest[0]))

    def refunds_of(self, intent_id: str) -> list[Refund]:
        """Every refund of the intent with its status, from the provider's list (consistent, unlike search)."""
        with stripe_errors(creates_charge=False):
            listed = self._client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100})
        return [_refund(refund) for refund in listed.data]

    def refund(self, *, intent_id: str, amount_cents: int, order_id: str, idempotency_key: str) -> Refund:
        """Refund `amount_cents` of the intent; a replay with the same key answers the same refund."""
        metadata = {"order_id": order_id, "origin": ORIGIN}
        with stripe_errors(creates_charge=False):
            try:
                refund = self._client.v1.refunds.create(
                    params={"payment_intent": intent_id, "amount": amount_cents, "metadata": metadata},
                    options={"idempotency_key": idempotency_key},
                )
            except stripe.InvalidRequestError as e:
                if e.code not in ("amount_too_large", "charge_already_refunded"):
                    raise
                # Someone refunded part of the charge since we looked; the next attempt looks again.
                raise TransientError("the charge was refunded meanwhile: look again", code=e.code) from e
        return _refund(refund)

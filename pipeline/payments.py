"""Payments through the real `stripe` SDK: charge, reconcile and refund, with vendor errors mapped at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import stripe
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from pipeline.errors import PaymentDeclined, PaymentInDoubt, PaymentMisconfigured, TransientError


@dataclass(frozen=True)
class Charge:
    """A PaymentIntent as the saga sees it (status is Stripe's: `succeeded`, `requires_payment_method`, ...)."""

    intent_id: str
    status: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Refund:
    """A refund as the saga sees it; for a charge found already refunded: its latest refund and the total refunded."""

    refund_id: str
    status: str
    amount_cents: int


def _charge(intent: stripe.PaymentIntent) -> Charge:
    return Charge(intent.id, intent.status, intent.amount, intent.currency)


def _refund(refund: stripe.Refund) -> Refund:
    return Refund(refund.id, refund.status or "unknown", refund.amount)


def _search_literal(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@contextmanager
def _stripe_errors(*, creates_charge: bool) -> Iterator[None]:
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
        # For a call that may have charged the card, assume the worst: the caller must reconcile (find_charge)
        # before anything else. Refunds and reads are safe to retry as-is (same idempotency key / no effect).
        if creates_charge:
            raise PaymentInDoubt(f"outcome unknown: {e.user_message or e}") from e
        raise TransientError(f"could not reach Stripe: {e.user_message or e}") from e
    except stripe.RateLimitError as e:
        raise TransientError(f"rate limited by Stripe: {e.user_message or e}", http_status=e.http_status) from e
    except (stripe.AuthenticationError, stripe.PermissionError, stripe.IdempotencyError) as e:
        raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status) from e
    except stripe.InvalidRequestError as e:
        raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status, code=e.code) from e
    except stripe.StripeError as e:
        # 5xx, 409 lock conflicts and anything unclassified. A retry reuses the idempotency key, so it cannot charge
        # twice; note real Stripe saves a 5xx that happened mid-execution under the key and replays it.
        if e.http_status is not None and 400 <= e.http_status < 500 and e.http_status != 409:
            raise PaymentMisconfigured(e.user_message or str(e), http_status=e.http_status) from e
        raise TransientError(f"Stripe error: {e.user_message or e}", http_status=e.http_status) from e


def _http_client(api_base: str | None, timeout_s: float) -> stripe.RequestsClient:
    """A requests session that reads the environment once, not on every call.

    With `trust_env` requests looks up proxies and ~/.netrc for every request, which cost more CPU
    than the rest of the HTTP call. The proxy settings are read here instead, for Stripe's address.
    The session is shared by the worker's threads: its connection pool is thread-safe, and Stripe
    sets no cookies.
    """
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", HTTPAdapter(pool_maxsize=32))
    session.mount("http://", HTTPAdapter(pool_maxsize=32))
    return stripe.RequestsClient(timeout=timeout_s, session=session, proxy=environment_proxy(api_base))


def environment_proxy(api_base: str | None) -> str | None:
    """The proxy the environment sets for Stripe's address (HTTPS_PROXY, ALL_PROXY, NO_PROXY), if any."""
    address = api_base or "https://api.stripe.com"
    proxies = get_environ_proxies(address)  # {} when NO_PROXY covers the address
    return proxies.get(urlsplit(address).scheme) or proxies.get("all")


class StripePayments:
    """The saga's payment adapter; `api_base=None` talks to the real Stripe."""

    def __init__(self, api_key: str, api_base: str | None, timeout_s: float = 10.0) -> None:
        self._http = _http_client(api_base, timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,  # retries belong to the saga (Dramatiq), always with the same idempotency key
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the HTTP session's connections (a later call opens new ones)."""
        self._http.close()  # type: ignore[no-untyped-call]  # the SDK leaves close() unannotated

    def __enter__(self) -> StripePayments:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def charge(
        self, *, order_id: str, amount_cents: int, currency: str, payment_method: str, idempotency_key: str
    ) -> Charge:
        """Create and confirm a PaymentIntent tagged with the order id; a replay with the same key charges once."""
        with _stripe_errors(creates_charge=True):
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

    def find_charge(self, *, order_id: str, intent_id: str | None) -> Charge | None:
        """Reconcile an in-doubt charge: the order's succeeded intent if any, else its latest, else None."""
        with _stripe_errors(creates_charge=False):
            intents: dict[str, stripe.PaymentIntent] = {}
            if intent_id:
                try:
                    intents[intent_id] = self._client.v1.payment_intents.retrieve(intent_id)
                except stripe.InvalidRequestError as e:
                    if e.http_status != 404:
                        raise
            # Stripe's search is eventually consistent (usually under a minute): fine for reconciling after a
            # timeout when the retry reuses the idempotency key, which is what makes a second charge impossible.
            query = f"metadata['order_id']:{_search_literal(order_id)}"
            for found in self._client.v1.payment_intents.search(params={"query": query, "limit": 100}).data:
                intents.setdefault(found.id, found)
        if not intents:
            return None
        latest = sorted(intents.values(), key=lambda i: i.created, reverse=True)
        return _charge(next((i for i in latest if i.status == "succeeded"), latest[0]))

    def refund(self, *, intent_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        """Refund the intent; a replay, or a charge that is already fully refunded, answers success."""
        with _stripe_errors(creates_charge=False):
            try:
                refund = self._client.v1.refunds.create(
                    params={"payment_intent": intent_id, "amount": amount_cents},
                    options={"idempotency_key": idempotency_key},
                )
            except stripe.InvalidRequestError as e:
                if e.code != "charge_already_refunded":
                    raise
                return self._existing_refund(intent_id)
        return _refund(refund)

    def _existing_refund(self, intent_id: str) -> Refund:
        refunds = self._client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100}).data
        done = [r for r in refunds if r.status == "succeeded"]
        if not done:
            raise PaymentMisconfigured("Stripe says the charge is refunded but lists no refund", intent_id=intent_id)
        return Refund(done[0].id, "succeeded", sum(r.amount for r in done))

"""Webhook endpoints as `stripe listen --forward-to` reaches them: a URL, a signing secret, signed POSTs."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

URL_ENV, SECRET_ENV = "FAKE_STRIPE_WEBHOOK_URL", "FAKE_STRIPE_WEBHOOK_SECRET"
TIMEOUT_S = 5.0

# Loopback receivers are reached directly: an HTTP(S)_PROXY meant for the internet must not swallow them.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class WebhookTarget:
    """Where events are forwarded, and the `whsec_...` secret their signatures are made with."""

    url: str
    secret: str

    @classmethod
    def create(cls, url: str, secret: str | None = None) -> WebhookTarget:
        """A target; without a secret one is made up, as `stripe listen` does."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        return cls(url, secret or f"whsec_{secrets.token_hex(16)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WebhookTarget | None:
        """FAKE_STRIPE_WEBHOOK_URL and FAKE_STRIPE_WEBHOOK_SECRET; None when the URL is unset."""
        url = environ.get(URL_ENV)
        return cls.create(url, environ.get(SECRET_ENV)) if url else None

    def to_dict(self) -> dict[str, str]:
        """The settings as JSON."""
        return {"url": self.url, "secret": self.secret}


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Stripe-Signature` header value: `t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def post(target: WebhookTarget, body: bytes) -> tuple[int | None, str | None]:
    """POST one signed event; (status code, None) when answered, (None, error) when the connection failed."""
    request = urllib.request.Request(target.url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
    request.add_header("Stripe-Signature", signature(target.secret, body, int(time.time())))
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, None
    except (OSError, ValueError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}"

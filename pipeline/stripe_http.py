"""The HTTP session the Stripe SDK talks through: one per process, proxies read once."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
import stripe
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies


def http_client(api_base: str | None, timeout_s: float) -> stripe.RequestsClient:
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

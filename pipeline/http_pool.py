"""The providers' HTTP connections: a urllib3 pool manager per adapter, the environment's proxy read once.

urllib3 is what requests and the Stripe SDK's default client send through; called directly it costs a
saga step less CPU than a requests session or an httpx client around the same exchange (scripts/bench).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import urllib3
from requests.utils import get_environ_proxies

# Connections kept per host: one per worker thread, with room for a webhook handler's calls.
POOL_SIZE = 32


def pool_manager(address: str, timeout_s: float, **tls: Any) -> urllib3.PoolManager:
    """Kept-alive connections to `address`, through the environment's proxy for it; no retries, no redirects.

    Retries belong to the saga (Dramatiq), always under the same idempotency key. `tls` goes to every
    connection (the Stripe SDK's CA bundle).
    """
    settings: dict[str, Any] = {
        "maxsize": POOL_SIZE,
        "timeout": urllib3.Timeout(connect=timeout_s, read=timeout_s),
        "retries": urllib3.Retry(total=False, redirect=False),
        **tls,
    }
    proxy = environment_proxy(address)
    return urllib3.ProxyManager(proxy, **settings) if proxy else urllib3.PoolManager(**settings)


def environment_proxy(address: str) -> str | None:
    """The proxy the environment sets for this address (HTTPS_PROXY, ALL_PROXY, NO_PROXY), if any."""
    proxies = get_environ_proxies(address)  # {} when NO_PROXY covers the address
    return proxies.get(urlsplit(address).scheme) or proxies.get("all")

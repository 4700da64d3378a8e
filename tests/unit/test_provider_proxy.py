"""The providers' HTTP clients read proxies from the environment once; these are the rules they apply."""

from __future__ import annotations

import pytest
import stripe
import urllib3

from pipeline.http_pool import environment_proxy
from pipeline.stripe_http import http_client

STRIPE = "https://api.stripe.com"
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_no_proxy_configured() -> None:
    assert environment_proxy(STRIPE) is None


def test_https_proxy_applies_to_real_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    assert environment_proxy(STRIPE) == "http://egress:3128"


def test_http_proxy_applies_to_a_plain_http_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://egress:3128")
    assert environment_proxy("http://stripe.internal:12111") == "http://egress:3128"
    assert environment_proxy(STRIPE) is None, "HTTP_PROXY does not cover https://api.stripe.com"


def test_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://egress:1080")
    assert environment_proxy(STRIPE) == "socks5://egress:1080"


def test_no_proxy_exempts_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert environment_proxy("https://127.0.0.1:12111") is None
    assert environment_proxy(STRIPE) == "http://egress:3128"


def test_the_client_verifies_tls_against_the_sdks_bundle_retries_nothing_and_goes_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct = http_client(None, timeout_s=3.0)._pool
    assert not isinstance(direct, urllib3.ProxyManager)
    assert direct.connection_pool_kw["ca_certs"] == stripe.ca_bundle_path
    assert direct.connection_pool_kw["retries"].total is False  # a retry is the saga's, under the same key
    assert direct.connection_pool_kw["timeout"].read_timeout == 3.0

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxied = http_client(None, timeout_s=3.0)._pool
    assert isinstance(proxied, urllib3.ProxyManager) and proxied.proxy is not None
    assert proxied.proxy.host == "proxy.internal"

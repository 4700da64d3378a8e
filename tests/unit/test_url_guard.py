"""The webhook URL guard, without the network: literal addresses, `localhost`, and a resolver given as a function."""

from __future__ import annotations

import random

import pytest

from models.webhook_schemas import EventType
from pipeline.order_events import EVENT_TYPES
from pipeline.url_guard import UnsafeUrl, check
from pipeline.webhook_delivery import backoff_s


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://10.0.0.1/",
        "https://172.16.5.4/",
        "https://192.168.0.10/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
    ],
)
def test_a_host_with_a_non_public_address_is_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="non-public address"):
        check(url, allow_http=False, allowed_hosts=[])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.215.14/", "must use https"),
        ("ftp://93.184.215.14/", "must use https"),
        ("https:///nohost", "names no host"),
        ("https://u:p@93.184.215.14/", "credentials"),
        ("https://93.184.215.14:70000/", "does not parse"),
        ("https://93.184.215.14/a b", "spaces or control"),
        ("hooks.example.com/x", "must use https"),
    ],
)
def test_a_url_that_is_not_absolute_https_without_credentials_is_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check(url, allow_http=False, allowed_hosts=[])


def test_a_public_address_passes_and_is_the_one_to_connect_to() -> None:
    target = check("https://93.184.215.14:8443/hooks?x=1", allow_http=False, allowed_hosts=[])

    assert (target.scheme, target.host, target.port, target.address) == (
        "https",
        "93.184.215.14",
        8443,
        "93.184.215.14",
    )


def test_a_name_is_refused_if_any_of_its_addresses_is_private_as_dns_rebinding_would_use() -> None:
    with pytest.raises(UnsafeUrl, match="10.1.1.1"):
        check(
            "https://shop.example/",
            allow_http=False,
            allowed_hosts=[],
            resolve=resolving_to("93.184.215.14", "10.1.1.1"),
        )

    assert check("https://shop.example/", allow_http=False, allowed_hosts=[], resolve=resolving_to("93.184.215.14"))


def test_the_allow_list_lets_loopback_through_by_name_or_address_and_http_only_when_allowed() -> None:
    assert check("https://localhost:8443/", allow_http=False, allowed_hosts=["localhost"]).address == "127.0.0.1"
    assert check("http://127.0.0.1:9/", allow_http=True, allowed_hosts=["127.0.0.1"]).port == 9
    with pytest.raises(UnsafeUrl, match="must use https"):
        check("http://127.0.0.1:9/", allow_http=False, allowed_hosts=["127.0.0.1"])
    with pytest.raises(UnsafeUrl, match="non-public"):
        check("https://10.0.0.1/", allow_http=False, allowed_hosts=["127.0.0.1"])


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def nothing(host: str, port: int) -> list[str]:
        return []

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check("https://shop.example/", allow_http=False, allowed_hosts=[], resolve=nothing)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter_of_at_most_half() -> None:
    rand = random.Random(7)
    waits = [backoff_s(n, 10, 3600, rand) for n in range(1, 12)]

    ceilings = [min(3600, 10 * 2 ** (n - 1)) for n in range(1, 12)]
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True))
    assert backoff_s(10_000, 10, 3600, rand) <= 3600


def test_the_api_schema_names_exactly_the_event_types_the_outbox_writes() -> None:
    assert EventType.__args__ == EVENT_TYPES  # type: ignore[attr-defined]

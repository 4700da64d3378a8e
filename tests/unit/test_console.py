"""The console's pure parts: its session cookie, where sign-in may send the browser, the chart, the formats."""

from __future__ import annotations

import time

import jwt
import pytest

from api.auth import ALGORITHM, Client
from api.console.chart import HEIGHT, stacked_bars
from api.console.session import csrf_matches, open_session, read_session, session_keys
from api.console.sign_in import safe_next
from api.console.web import ago, money, when

KEYS = session_keys(["k" * 40, "old" * 14])


def test_a_session_names_its_operator_may_act_only_with_admin_and_never_outlives_its_token() -> None:
    soon = time.time() + 90
    cookie, admin = open_session(Client("ops-alice", frozenset({"admin"})), soon, KEYS, ttl_s=28800)
    _, reader = open_session(Client("ops-bob", frozenset({"console:read"})), time.time() + 10**6, KEYS, ttl_s=600)

    assert read_session(cookie, KEYS) == admin
    assert (admin.name, admin.may_act, reader.may_act) == ("ops-alice", True, False)
    assert admin.expires_at == int(soon) and reader.expires_at <= time.time() + 600


def test_a_session_signed_with_a_rotated_out_key_still_reads_and_one_from_elsewhere_does_not() -> None:
    cookie, operator = open_session(Client("ops", frozenset({"admin"})), time.time() + 60, KEYS[1:], ttl_s=60)
    foreign, _ = open_session(Client("ops", frozenset({"admin"})), time.time() + 60, session_keys(["x" * 40]), 60)

    assert read_session(cookie, KEYS) == operator
    assert read_session(foreign, KEYS) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "ops", "act": True, "sid": "s", "csrf": "c", "exp": int(time.time()) - 1},  # expired
        {"sub": "ops", "act": "yes", "sid": "s", "csrf": "c", "exp": int(time.time()) + 60},  # not a boolean
        {"sub": "ops", "act": True, "csrf": "c", "exp": int(time.time()) + 60},  # no session id
        {"sub": 7, "act": True, "sid": "s", "csrf": "c", "exp": int(time.time()) + 60},  # not a name
    ],
)
def test_an_expired_or_malformed_session_is_no_session(claims: dict[str, object]) -> None:
    assert read_session(jwt.encode(claims, KEYS[0], algorithm=ALGORITHM), KEYS) is None


def test_garbage_or_no_cookie_is_no_session_and_the_csrf_token_must_match_exactly() -> None:
    _, operator = open_session(Client("ops", frozenset({"admin"})), time.time() + 60, KEYS, ttl_s=60)

    assert read_session(None, KEYS) is None and read_session("not.a.jwt", KEYS) is None
    assert csrf_matches(operator, operator.csrf)
    assert not csrf_matches(operator, None) and not csrf_matches(operator, operator.csrf[:-1])


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/console/orders?status=paid", "/console/orders?status=paid"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/v1/orders", "/console"),
        ("/console\\@evil.example", "/console"),
    ],
)
def test_sign_in_sends_the_browser_back_only_to_a_console_page(asked: str, sent_to: str) -> None:
    assert safe_next(asked) == sent_to


def test_the_chart_stacks_each_minutes_statuses_from_the_bottom_scaled_to_the_tallest_minute() -> None:
    rows = [
        {"minute": "m0", "shipped": 0, "cancelled": 0, "needs_attention": 0},
        {"minute": "m1", "shipped": 6, "cancelled": 2, "needs_attention": 0},
        {"minute": "m2", "shipped": 2, "cancelled": 0, "needs_attention": 2},
    ]

    bars, tallest = stacked_bars(rows, ("shipped", "cancelled", "needs_attention"))

    assert tallest == 8 and [bar.total for bar in bars] == [0, 8, 4]
    assert bars[0].segments == []
    shipped, cancelled = bars[1].segments
    assert (shipped.y, shipped.height, cancelled.y, cancelled.height) == (35.0, 105.0, 0.0, 35.0)
    assert sum(segment.height for segment in bars[2].segments) == HEIGHT / 2
    assert bars[0].x < bars[1].x < bars[2].x


def test_durations_money_and_times_read_as_an_operator_expects() -> None:
    assert [ago(s) for s in (None, 5, 90, -90, 7260, 90000)] == ["", "5s", "1m30s", "-1m30s", "2h01m", "1d01h"]
    assert money(123456, "USD") == "1,234.56 USD" and money(None) == ""
    assert when("2026-12-02T12:25:43.817345+01:00") == "2026-12-02 11:25:43 UTC" and when(None) == ""

"""The console over HTTP (the browser tests drive the same pages in Chromium): sessions, CSRF, filters, pages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from fastapi.testclient import TestClient

from api.console.session import COOKIE
from scripts.fake_stripe import FakeStripeServer
from tests.api_helpers import api_client, token
from tests.conftest import Servers
from tests.factories import execute, make_order, make_product, stalled
from tests.integration.test_orderctl import all_queued, revived_and_ghost
from tests.saga_helpers import timeline, wait_until_terminal
from workers.operator.dead_letters import dead_letters


@pytest.fixture
def console(db_url: str, servers: Servers, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url) as client:
        yield client


def sign_in(client: TestClient, *scopes: str, name: str = "ops-alice") -> str:
    """Sign in with a token for the scopes; returns the CSRF token the pages carry."""
    answer = client.post("/console/sign-in", data={"token": token(*scopes, client=name)}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = client.get("/console/stuck")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found[1]


def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_an_action_runs_nothing(
    console: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")

    page = console.get("/console/orders?status=reserved", follow_redirects=False)
    action = console.post(
        "/console/actions/run", data={"action": "retry", "ids": [str(order_id)]}, follow_redirects=False
    )

    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=/console/orders%3Fstatus%3Dreserved"
    assert action.status_code == 303
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []
    # The overview's htmx refresh after the session ended: htmx is told to load the sign-in page itself.
    refresh = console.get("/console", headers={"HX-Request": "true"}, follow_redirects=False)
    assert (refresh.status_code, refresh.headers["HX-Redirect"]) == (204, "/console/sign-in?next=/console")


@pytest.mark.parametrize(
    ("scopes", "status", "shown"),
    [
        (("orders:read", "orders:write"), 401, "lacks the admin or console:read scope"),
        ((), 401, "signature"),
    ],
)
def test_a_token_that_cannot_use_the_console_is_refused_on_the_sign_in_page(
    console: TestClient, scopes: tuple[str, ...], status: int, shown: str
) -> None:
    value = token(*scopes) if scopes else token("admin", secret="x" * 40)
    answer = console.post("/console/sign-in", data={"token": value}, follow_redirects=False)

    assert answer.status_code == status
    assert shown in answer.text and COOKIE not in answer.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_strict_scoped_and_expires_with_the_token(console: TestClient) -> None:
    answer = console.post(
        "/console/sign-in",
        data={"token": token("admin", ttl=120), "next": "https://evil.example/"},
        follow_redirects=False,
    )

    cookie = answer.headers["set-cookie"]
    assert answer.headers["location"] == "/console"  # never a redirect off the site
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie)[1])  # type: ignore[index]
    assert 100 <= max_age <= 120


def test_a_forged_or_tampered_session_cookie_is_no_session(console: TestClient) -> None:
    sign_in(console, "admin")
    real = console.cookies[COOKIE]
    console.cookies.clear()
    console.cookies.set(COOKIE, real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"), path="/console")

    assert console.get("/console", follow_redirects=False).status_code == 303
    # A bearer token is not a session either: the cookie is signed with a key derived for the console.
    console.cookies.set(COOKIE, token("admin"), path="/console")
    assert console.get("/console", follow_redirects=False).status_code == 303


def test_a_form_without_its_csrf_token_or_with_another_sessions_is_refused_and_changes_nothing(
    console: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    sign_in(console, "admin")
    other = TestClient(console.app)
    other_csrf = sign_in(other, "admin", name="ops-bob")

    missing = console.post("/console/actions/run", data={"action": "retry", "ids": [str(order_id)]})
    foreign = console.post("/console/actions/run", data={"action": "retry", "ids": [str(order_id)], "csrf": other_csrf})

    for answer in (missing, foreign):
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []


def test_a_read_only_operator_sees_the_pages_and_every_action_is_refused(
    console: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    csrf = sign_in(console, "console:read", name="ops-reader")

    stuck = console.get("/console/stuck")
    for action in ("preview", "run"):
        answer = console.post(
            f"/console/actions/{action}", data={"action": "retry", "ids": [str(order_id)], "csrf": csrf}
        )
        assert answer.status_code == 403 and "read-only" in answer.text

    assert stuck.status_code == 200 and str(order_id) in stuck.text
    assert 'id="retry-selected"' not in stuck.text and 'name="ids"' not in stuck.text
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []


def test_a_confirmed_retry_is_noted_with_the_operators_name_and_a_preview_changes_nothing(
    console: TestClient, db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    csrf = sign_in(console, "admin")
    form = {"action": "retry", "ids": [str(order_id)], "csrf": csrf}

    preview = console.post("/console/actions/preview", data=form)
    assert "would send charge_payment" in preview.text
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []

    done = console.post("/console/actions/run", data=form | {"reason": "provider back"})

    assert done.status_code == 200 and "sent charge_payment" in done.text
    assert all_queued(redis_client) == [("charge_payment", str(order_id))]
    [note] = notes(db_url, order_id)
    assert note == "operator=ops-alice reason='provider back' sent=charge_payment"


def notes(db_url: str, order_id: uuid.UUID) -> list[str]:
    from sqlalchemy import text

    from models.db import engine_for

    with engine_for(db_url).connect() as connection:
        query = text(
            "SELECT error_message FROM saga_steps WHERE order_id = :id AND kind = 'operator' ORDER BY started_at"
        )
        return list(connection.scalars(query, {"id": order_id}))


def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(console: TestClient) -> None:
    csrf = sign_in(console, "admin")
    copied = console.cookies[COOKIE]

    without = console.post("/console/sign-out", data={}, follow_redirects=False)
    assert without.status_code == 403  # sign-out is a form like any other: it needs the token
    gone = console.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    console.cookies.set(COOKIE, copied, path="/console")

    assert gone.status_code == 303 and gone.headers["location"] == "/console/sign-in"
    assert console.get("/console", follow_redirects=False).status_code == 303


def test_the_order_list_filters_and_walks_keyset_pages_without_repeating_or_skipping(
    console: TestClient, db_url: str
) -> None:
    product = make_product(db_url)
    placed = [make_order(db_url, [(product, 1)], client_id="shop-pages") for _ in range(120)]
    execute(
        db_url,
        "UPDATE orders SET created_at = now() - make_interval(secs => 1000 - n) FROM "
        "(SELECT id AS oid, row_number() OVER (ORDER BY id) AS n FROM orders) AS ranked WHERE id = oid",
    )
    make_order(db_url, [(product, 1)], client_id="shop-other")
    sign_in(console, "console:read")

    seen, url = [], "/console/orders?client=shop-pages&sort=oldest"
    while url:
        page = console.get(url)
        assert page.status_code == 200
        seen += re.findall(r'href="/console/orders/([0-9a-f-]{36})"', page.text)
        following = re.search(r'href="([^"]+)" id="next-page"', page.text)
        url = following[1].replace("&amp;", "&") if following else ""

    assert sorted(seen) == sorted(map(str, placed)) and len(seen) == len(set(seen)) == 120


def test_the_order_list_finds_by_order_id_user_id_status_and_reason(console: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    declined = stalled(db_url, "cancelled", None)
    other = make_order(db_url, [(product, 1)])
    sign_in(console, "console:read")

    by_reason = console.get("/console/orders?code=PAYMENT_DECLINED").text
    by_id = console.get(f"/console/orders?q={other}").text
    by_status = console.get("/console/orders?status=cancelled").text

    assert str(declined) in by_reason and str(other) not in by_reason
    assert str(other) in by_id and str(declined) not in by_id
    assert str(declined) in by_status and str(other) not in by_status


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("/console/orders?status=lost", "no order status"),
        ("/console/orders?since=yesterday", "since is not a date"),
        ("/console/orders?sort=sideways", "sort is newest or oldest"),
        ("/console/orders?cursor=bm9wZQ", "page link"),
        ("/console/orders?q=" + "x" * 200, "longer than"),
        ("/console/orders/not-an-id", "not an order id"),
        (f"/console/orders/{uuid.uuid4()}", "no order"),
        ("/console/stuck?older_than_min=-1", "older_than_min"),
    ],
)
def test_bad_input_is_a_4xx_page_that_says_why(console: TestClient, db_url: str, url: str, shown: str) -> None:
    sign_in(console, "console:read")

    answer = console.get(url)

    assert 400 <= answer.status_code < 500 and shown in answer.text
    assert answer.headers["content-type"].startswith("text/html") and "Traceback" not in answer.text


def test_an_action_on_an_unknown_order_or_with_a_bad_id_says_so(console: TestClient, db_url: str) -> None:
    csrf = sign_in(console, "admin")
    ghost = uuid.uuid4()

    unknown = console.post("/console/actions/preview", data={"action": "retry", "ids": [str(ghost)], "csrf": csrf})
    bad = console.post("/console/actions/preview", data={"action": "retry", "ids": ["nope"], "csrf": csrf})
    empty = console.post("/console/actions/preview", data={"action": "retry", "csrf": csrf})
    strange = console.post("/console/actions/preview", data={"action": "explode", "ids": [str(ghost)], "csrf": csrf})

    assert unknown.status_code == 200 and "no such order" in unknown.text
    assert (bad.status_code, empty.status_code, strange.status_code) == (400, 400, 400)
    assert "select at least one" in empty.text and "no action" in strange.text


def test_every_asset_is_served_by_the_api_and_pages_allow_no_other_origin(console: TestClient, db_url: str) -> None:
    sign_in(console, "console:read")
    page = console.get("/console")

    assets = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text)
    assert {"/console/static/htmx.min.js", "/console/static/console.css", "/console/static/console.js"} <= set(assets)
    for asset in assets:
        assert console.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


def test_dead_letters_are_requeued_through_their_order_or_purged_from_the_console(
    console: TestClient,
    db_url: str,
    worker: dramatiq.Worker,
    redis_client: redis.Redis,
    stripe_server: FakeStripeServer,
) -> None:
    revived, ghost = revived_and_ghost(db_url, redis_client)
    letter_of = {letter.order_id: letter.message_id for letter in dead_letters(redis_client)}
    csrf = sign_in(console, "admin")
    assert all(message_id in console.get("/console/stuck").text for message_id in letter_of.values())

    preview = console.post(
        "/console/actions/preview", data={"action": "requeue", "ids": list(letter_of.values()), "csrf": csrf}
    )
    assert "would send reserve_stock" in preview.text and "would drop it: no live order" in preview.text
    assert len(dead_letters(redis_client)) == 2

    requeued = console.post(
        "/console/actions/run", data={"action": "requeue", "ids": [letter_of[str(revived)]], "csrf": csrf}
    )
    assert "sent reserve_stock" in requeued.text
    assert wait_until_terminal(db_url, [revived])[revived].status == "shipped"
    purged = console.post(
        "/console/actions/run", data={"action": "purge", "ids": [letter_of[str(ghost)]], "csrf": csrf}
    )

    assert "dropped reserve_stock from stock" in purged.text and dead_letters(redis_client) == []
    assert ("operator_dlq_requeue", "succeeded") in timeline(db_url, revived)

"""The operator console in headless Chromium (Debian's chromium and chromium-driver, through selenium), against
the real stack: the API served by uvicorn on a port, Postgres, Redis, saga workers, the loopback Stripe.

Each page's screenshot goes to CONSOLE_SCREENSHOTS (docs/console/ when the README's pictures are renewed), or
to a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from pipeline import saga
from scripts.devstack.localstack import free_port
from scripts.fake_stripe import FakeStripeServer
from tests.api_helpers import api_settings, token
from tests.conftest import Servers
from tests.factories import make_order, make_product, stalled
from tests.integration.test_orderctl import all_queued
from tests.saga_helpers import stock, timeline, wait_until_terminal
from workers.enqueue import start_saga
from workers.saga.runner import run_action

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# As the machine's notes advise: no first-run work and no background connections on a closed network.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1360,1000",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(
            "the console's browser tests need Debian's chromium and chromium-driver: `python3 scripts/dev.py test` "
            "installs them when it can (root with apt-get); otherwise `apt-get install chromium chromium-driver`"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # selenium must not look for a driver online: it is given one
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def console(db_url: str, servers: Servers, redis_client: redis.Redis) -> Iterator[str]:
    """The API with its console, served by uvicorn on a free port of this machine; its base URL."""
    app = create_app(api_settings(db_url, servers.redis_url))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def sign_in(driver: WebDriver, base: str, *scopes: str, name: str = "ops-alice", shot: Path | None = None) -> None:
    """Sign in on the sign-in page (the one the browser was sent to, if it was)."""
    if not driver.current_url.startswith(f"{base}/console/sign-in"):  # this test's server, not a previous one
        driver.delete_all_cookies()
        driver.get(f"{base}/console/sign-in")
    driver.find_element(By.ID, "token").send_keys(token(*scopes, client=name))
    if shot:
        driver.save_screenshot(str(shot))
    driver.find_element(By.ID, "sign-in").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "operator"))


def wait_for(driver: WebDriver, condition: object, seconds: float = 15) -> object:
    # The overview's htmx refresh replaces its elements: one found just before a swap is stale, so look again.
    waiting = WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])
    return waiting.until(condition)  # type: ignore[arg-type]


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def ship(db_url: str, count: int) -> list[uuid.UUID]:
    product = make_product(db_url, stock=50)
    placed = [make_order(db_url, [(product, 1)]) for _ in range(count)]
    for order_id in placed:
        start_saga(order_id)
    assert {order.status for order in wait_until_terminal(db_url, placed).values()} == {"shipped"}
    return placed


def test_sign_in_shows_the_overview_which_refreshes_itself(
    browser: WebDriver, console: str, db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer, shots: Path
) -> None:
    ship(db_url, 3)
    make_order(db_url, [(make_product(db_url), 1)])  # pending: its first message never sent
    stalled(db_url, "reserved", "charge_payment")
    browser.get(f"{console}/console/orders")
    assert "/console/sign-in" in browser.current_url  # no session: to the sign-in page

    sign_in(browser, console, "admin", shot=shots / "sign-in.png")

    assert browser.current_url.endswith("/console/orders")  # back where it was going
    browser.get(f"{console}/console")
    assert (text_of(browser, "live-pending"), text_of(browser, "live-reserved")) == ("1", "1")
    assert text_of(browser, "finished-shipped") == "3" and text_of(browser, "stuck-count") == "1"
    assert browser.find_elements(By.CSS_SELECTOR, "#throughput rect.shipped")
    queues = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#queues tbody tr")]
    assert {"orders", "payments", "stock", "fulfilment", "webhooks"} <= set(queues)
    browser.save_screenshot(str(shots / "overview.png"))
    cookie = browser.get_cookie("orderflow_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    worker.pause()  # hold the new order at pending, so the count it adds is still there when the page looks
    make_order(db_url, [(make_product(db_url), 1)])
    wait_for(browser, lambda d: d.find_element(By.ID, "live-pending").text == "2", seconds=12)  # no reload: htmx
    worker.resume()
    browser.delete_cookie("orderflow_console")  # the session ends: the next refresh goes to the sign-in page
    wait_for(browser, lambda d: "/console/sign-in" in d.current_url, seconds=12)


def test_filter_the_orders_open_one_and_read_its_timeline_payment_and_events(
    browser: WebDriver, console: str, db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer, shots: Path
) -> None:
    [shipped] = ship(db_url, 1)
    declined = stalled(db_url, "cancelled", None)
    sign_in(browser, console, "console:read", name="ops-reader")

    browser.get(f"{console}/console/orders")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("shipped")
    browser.find_element(By.ID, "apply-filters").click()
    wait_for(browser, lambda d: "status=shipped" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#orders tbody tr")
    assert [row.get_attribute("class") for row in rows] == ["status-shipped"]
    assert str(declined)[:8] not in browser.find_element(By.ID, "orders").text
    browser.save_screenshot(str(shots / "orders.png"))

    rows[0].find_element(By.TAG_NAME, "a").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "order-id"))

    assert (text_of(browser, "order-id"), text_of(browser, "order-status")) == (str(shipped), "shipped")
    entries = browser.find_elements(By.CSS_SELECTOR, "#timeline li")
    assert [entry.find_element(By.TAG_NAME, "b").text for entry in entries] == [step.name for step in saga.STEPS]
    assert all("succeeded" in entry.text and " ms" in entry.text for entry in entries)
    assert text_of(browser, "payment").startswith("status succeeded")
    assert "pi_" in text_of(browser, "payment") and "tracking" in text_of(browser, "shipment")
    assert "order.shipped" in text_of(browser, "events")
    browser.save_screenshot(str(shots / "order.png"))


def test_retry_a_stuck_order_after_seeing_its_blast_radius_and_watch_it_ship(
    browser: WebDriver, console: str, db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer, shots: Path
) -> None:
    order_id = stalled(db_url, "pending", "reserve_stock")  # its worker died and its message was lost
    parked = stalled(db_url, "needs_attention", "refund_payment")
    sign_in(browser, console, "admin")

    browser.get(f"{console}/console/stuck")
    assert str(parked)[:8] in text_of(browser, "attention-orders")
    browser.find_element(By.ID, f"stuck-{order_id}").click()
    browser.save_screenshot(str(shots / "stuck.png"))
    browser.find_element(By.ID, "retry-selected").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "blast-radius"))

    assert "would send reserve_stock" in text_of(browser, "blast-radius")
    assert timeline(db_url, order_id) == []  # the preview is a dry run
    browser.find_element(By.ID, "reason").send_keys("worker lost its message")
    browser.save_screenshot(str(shots / "confirm.png"))
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "results"))
    assert "sent reserve_stock" in text_of(browser, "results")
    browser.save_screenshot(str(shots / "results.png"))

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    browser.get(f"{console}/console/orders/{order_id}")
    assert text_of(browser, "order-status") == "shipped"
    assert "operator=ops-alice reason='worker lost its message'" in text_of(browser, "timeline")


def test_compensate_an_order_from_its_page_releases_its_stock_and_cancels_it(
    browser: WebDriver, console: str, db_url: str, worker: dramatiq.Worker, stripe_server: FakeStripeServer
) -> None:
    product = make_product(db_url, stock=4)
    order_id = make_order(db_url, [(product, 3)])
    worker.pause()  # hold the saga at `reserved`, its charge message waiting in Redis
    run_action("reserve_stock", str(order_id))
    sign_in(browser, console, "admin")

    browser.get(f"{console}/console/orders/{order_id}")
    browser.find_element(By.ID, "compensate-order").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "blast-radius"))
    assert "would run refund_payment, release_stock, then cancel" in text_of(browser, "blast-radius")
    browser.find_element(By.ID, "confirm").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "results"))
    worker.resume()

    order = wait_until_terminal(db_url, [order_id])[order_id]
    assert (order.status, order.cancel_reason) == ("cancelled", "CANCELLED_BY_OPERATOR")
    assert stock(db_url, product) == (4, 4, 0, 0)
    browser.get(f"{console}/console/orders/{order_id}")
    assert text_of(browser, "cancel-reason") == "CANCELLED_BY_OPERATOR"


def test_an_action_whose_form_lost_its_csrf_token_is_refused_and_nothing_moves(
    browser: WebDriver, console: str, db_url: str, redis_client: redis.Redis
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    sign_in(browser, console, "admin")
    browser.get(f"{console}/console/stuck")

    browser.execute_script("document.querySelector('#stuck-form input[name=csrf]').remove()")
    browser.find_element(By.ID, f"stuck-{order_id}").click()
    browser.find_element(By.ID, "retry-selected").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "refused"))

    assert "CSRF" in text_of(browser, "refused")
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []


def test_a_read_only_operator_sees_the_stuck_orders_and_cannot_act_even_with_a_handmade_form(
    browser: WebDriver, console: str, db_url: str, redis_client: redis.Redis, shots: Path
) -> None:
    order_id = stalled(db_url, "reserved", "charge_payment")
    sign_in(browser, console, "console:read", name="ops-reader")
    browser.get(f"{console}/console/stuck")

    assert str(order_id)[:8] in text_of(browser, "stuck-orders") and text_of(browser, "read-only")
    assert not browser.find_elements(By.ID, "retry-selected") and not browser.find_elements(By.NAME, "ids")
    browser.save_screenshot(str(shots / "read-only.png"))
    # The page's own CSRF token (the sign-out form carries it), on a form built by hand.
    browser.execute_script(
        """const form = document.createElement('form');
        form.method = 'post'; form.action = '/console/actions/run';
        for (const [name, value] of [['action', 'retry'], ['ids', arguments[0]],
                                     ['csrf', document.querySelector('input[name=csrf]').value]]) {
            const input = document.createElement('input'); input.name = name; input.value = value; form.append(input);
        }
        document.body.append(form); form.submit();""",
        str(order_id),
    )
    wait_for(browser, lambda d: d.find_elements(By.ID, "refused"))

    assert "read-only" in text_of(browser, "refused")
    assert all_queued(redis_client) == [] and timeline(db_url, order_id) == []


def test_signing_out_ends_the_session(browser: WebDriver, console: str, db_url: str) -> None:
    sign_in(browser, console, "admin")
    cookie = browser.get_cookie("orderflow_console")
    assert cookie is not None

    browser.find_element(By.ID, "sign-out").click()
    wait_for(browser, lambda d: "/console/sign-in" in d.current_url)
    browser.add_cookie({key: cookie[key] for key in ("name", "value", "path")})  # a copy kept from before
    browser.get(f"{console}/console")

    assert "/console/sign-in" in browser.current_url

"""Customer e-mail over real SMTP: orders run through the real saga with NOTIFIER=smtp, and the run's mail server
(scripts/devstack/mail_sink.py, aiosmtpd) keeps what it receives, so each test reads the e-mail that was sent.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import dramatiq
import pytest

from models.status import NotificationKind
from pipeline.adapters import process_adapters
from pipeline.audit import audit, violations_only
from pipeline.config import Settings, get_settings
from pipeline.notify import Notice
from pipeline.smtp_notifier import NO_ADDRESS, SmtpNotifier
from scripts.devstack.mail_sink import MailSink
from scripts.devstack.processes import venv_tool
from scripts.fake_stripe import FakeStripeServer
from tests.conftest import Servers
from tests.edge_helpers import rows
from tests.factories import UNDELIVERABLE_ADDRESS, make_order, make_product
from tests.saga_helpers import succeeded_charges, timeline, wait_until_terminal
from workers.enqueue import start_saga

SHOP = "orders@shop.example.com"
ADA = "ada@example.com"


def forget_process_adapters() -> None:
    """Close the worker's adapters and forget them and the settings, so the next message builds them from env."""
    if process_adapters.cache_info().currsize:
        adapters = process_adapters()
        adapters.payments.close()
        adapters.carrier.close()
    process_adapters.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def smtp_settings(mail_server: MailSink) -> Iterator[None]:
    """NOTIFIER=smtp towards the run's mail server for this test; the worker's adapters are rebuilt either side."""
    saved = {name: os.environ.get(name) for name in ("NOTIFIER", "MAIL_FROM")}
    os.environ.update(NOTIFIER="smtp", MAIL_FROM=SHOP)
    forget_process_adapters()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    forget_process_adapters()


@pytest.fixture
def smtp_worker(smtp_settings: None, worker: dramatiq.Worker) -> dramatiq.Worker:
    """The `worker` fixture's real Dramatiq worker (stopped before the settings go back), e-mailing over SMTP."""
    assert isinstance(process_adapters().notifier, SmtpNotifier)
    return worker


def notifications(db_url: str, order_id: uuid.UUID) -> dict[str, str]:
    sql = "SELECT kind, provider_ref FROM notifications WHERE order_id = :id"
    return {row["kind"]: row["provider_ref"] for row in rows(db_url, sql, id=order_id)}


def test_a_confirmed_order_gets_one_confirmation_email_with_text_and_html_and_its_key_as_message_id(
    db_url: str, smtp_worker: dramatiq.Worker, mail_server: MailSink, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 3)], email=ADA)

    start_saga(order_id)

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    [mail] = mail_server.messages
    assert (mail.mail_from, mail.rcpt_tos) == (SHOP, (ADA,))
    message = mail.message
    assert (message["From"], message["To"]) == (SHOP, ADA)
    assert message["Subject"] == f"Your order {order_id} is confirmed"
    assert message["Message-ID"] == f"<{order_id}.confirmation@orderflow>"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert f"Order: {order_id}" in text.get_content() and "Total: 37.50 USD" in text.get_content()
    assert f"<b>{order_id}</b>" in html.get_content() and "Items: 1" in html.get_content()
    assert notifications(db_url, order_id) == {"confirmation": message["Message-ID"]}


def test_a_confirmed_order_that_cannot_ship_gets_a_cancellation_email_with_the_reason(
    db_url: str, smtp_worker: dramatiq.Worker, mail_server: MailSink, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)], address=UNDELIVERABLE_ADDRESS, email=ADA)

    start_saga(order_id)

    order = wait_until_terminal(db_url, [order_id])[order_id]
    assert (order.status, order.cancel_reason) == ("cancelled", "SHIPPING_REJECTED")
    confirmation, cancellation = (kept.message for kept in mail_server.to(ADA))
    assert confirmation["Subject"] == f"Your order {order_id} is confirmed"
    assert cancellation["Subject"] == f"Your order {order_id} is cancelled"
    assert cancellation["Message-ID"] == f"<{order_id}.cancellation@orderflow>"
    body = cancellation.get_body(("plain",))
    assert body is not None and "cancelled (SHIPPING_REJECTED)" in body.get_content()
    assert set(notifications(db_url, order_id)) == {"confirmation", "cancellation"}


def test_a_4xx_from_the_mail_server_is_retried_and_the_order_ships_with_one_email(
    db_url: str, smtp_worker: dramatiq.Worker, mail_server: MailSink, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)], email=ADA)
    mail_server.fail_next(2, 451, "greylisted, try again later")

    start_saga(order_id)

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    assert len(mail_server.messages) == 1
    notify = [outcome for step, outcome in timeline(db_url, order_id) if step == "notify"]
    assert notify == ["retrying", "retrying", "succeeded"]
    codes = rows(db_url, "SELECT error_code FROM saga_steps WHERE order_id = :id AND outcome = 'retrying'", id=order_id)
    assert [row["error_code"] for row in codes] == ["EMAIL_DEFERRED", "EMAIL_DEFERRED"]


def test_a_5xx_from_the_mail_server_is_permanent_and_the_order_is_refunded_and_released(
    db_url: str, smtp_worker: dramatiq.Worker, mail_server: MailSink, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)], email=ADA)
    mail_server.fail_next(1, 550, "no such mailbox")

    start_saga(order_id)

    order = wait_until_terminal(db_url, [order_id])[order_id]
    assert (order.status, order.cancel_reason) == ("cancelled", "EMAIL_REJECTED")
    assert mail_server.messages == [], "no confirmation went out, so no cancellation follows"
    assert ("notify", "failed") in timeline(db_url, order_id)
    assert ("send_cancellation", "skipped") in timeline(db_url, order_id)
    [charge] = succeeded_charges(stripe_server.ledger(), order_id)
    assert charge["amount_refunded"] == charge["amount"]
    assert violations_only(audit(db_url, stripe_server.ledger())) == {}


def test_an_order_without_an_address_ships_and_no_email_is_sent(
    db_url: str, smtp_worker: dramatiq.Worker, mail_server: MailSink, stripe_server: FakeStripeServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url), 1)])

    start_saga(order_id)

    assert wait_until_terminal(db_url, [order_id])[order_id].status == "shipped"
    assert mail_server.messages == []
    assert notifications(db_url, order_id) == {"confirmation": NO_ADDRESS}


def test_the_same_idempotency_key_sent_twice_carries_the_same_message_id(mail_server: MailSink) -> None:
    notifier = SmtpNotifier.from_settings(Settings(notifier="smtp", mail_from=SHOP))
    order_id = uuid.uuid4()
    notice = Notice(
        order_id, NotificationKind.CONFIRMATION, "ada", ADA, 1250, "USD", 1, None, f"{order_id}:confirmation"
    )

    first, again = notifier.send(notice), notifier.send(notice)  # a resend after a crash before the step committed

    assert first == again == f"<{order_id}.confirmation@orderflow>"
    assert [kept.message["Message-ID"] for kept in mail_server.messages] == [first, first]


def test_a_worker_with_notifier_smtp_and_no_smtp_host_refuses_to_start_with_one_line(servers: Servers) -> None:
    env = os.environ | {"NOTIFIER": "smtp", "SMTP_HOST": ""}

    done = subprocess.run(
        venv_tool("dramatiq", "workers.saga.worker", "--processes", "1", "--threads", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    refusals = [line for line in done.stderr.splitlines() if "SMTP_HOST" in line]
    assert refusals == [
        "orderflow worker refuses to start: NOTIFIER=smtp but SMTP_HOST is not set: "
        "set SMTP_HOST (and SMTP_PORT), or NOTIFIER=local"
    ]
    assert "Traceback" not in done.stderr

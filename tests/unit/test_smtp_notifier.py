"""The SMTP notifier's pure parts: what an answer from the mail server means, and the message it composes."""

from __future__ import annotations

import smtplib
import uuid

import pytest
from pydantic import ValidationError

from models.status import NotificationKind
from pipeline.adapters import check_adapter_settings
from pipeline.config import Settings
from pipeline.errors import EmailDeferred, EmailRejected, MailerUnauthorized, PipelineError, TransientError
from pipeline.notify import Notice
from pipeline.smtp_notifier import compose, mail_error, major_units, message_id, templates_of

ORDER = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000001")


def notice(kind: NotificationKind = NotificationKind.CONFIRMATION, **changes: object) -> Notice:
    fields: dict[str, object] = {
        "order_id": ORDER,
        "kind": kind,
        "user_id": "ada",
        "email": "ada@example.com",
        "total_cents": 3750,
        "currency": "USD",
        "lines": 2,
        "reason": None,
        "idempotency_key": f"{ORDER}:{kind.value}",
    }
    return Notice(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error, expected",
    [
        (smtplib.SMTPDataError(451, b"greylisted"), EmailDeferred),
        (smtplib.SMTPSenderRefused(421, b"too busy", "orders@shop.example"), EmailDeferred),
        (smtplib.SMTPDataError(554, b"rejected as spam"), EmailRejected),
        (smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such mailbox")}), EmailRejected),
        (smtplib.SMTPRecipientsRefused({"ada@example.com": (452, b"mailbox full")}), EmailDeferred),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), MailerUnauthorized),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), TransientError),
        (ConnectionRefusedError(111, "Connection refused"), TransientError),
        (TimeoutError("timed out"), TransientError),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), TransientError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_4xx_and_lost_connections_are_transient_and_5xx_permanent(error: Exception, expected: type) -> None:
    mapped = mail_error(error)

    assert type(mapped) is expected
    assert isinstance(mapped, PipelineError)


def test_a_refused_login_is_retried_without_cancelling_the_order() -> None:
    mapped = mail_error(smtplib.SMTPAuthenticationError(535, b"bad credentials"))

    assert isinstance(mapped, TransientError) and mapped.code == "EMAIL_PROVIDER_AUTH"


def test_the_message_id_is_made_from_the_idempotency_key_and_is_a_valid_msg_id() -> None:
    assert message_id(f"{ORDER}:confirmation") == f"<{ORDER}.confirmation@orderflow>"
    assert message_id(f"{ORDER}:confirmation") == message_id(f"{ORDER}:confirmation")
    assert message_id("a b<c>@d") == "<a.b.c..d@orderflow>"


@pytest.mark.parametrize("cents, currency, shown", [(3750, "USD", "37.50"), (5, "EUR", "0.05"), (50, "JPY", "50")])
def test_totals_are_written_in_major_units(cents: int, currency: str, shown: str) -> None:
    assert major_units(cents, currency) == shown


def test_a_confirmation_has_from_to_subject_message_id_and_text_and_html_bodies() -> None:
    templates = templates_of(Settings())

    message = compose(notice(), "orders@shop.example", templates["confirmation"])

    assert (message["From"], message["To"]) == ("orders@shop.example", "ada@example.com")
    assert message["Subject"] == f"Your order {ORDER} is confirmed"
    assert message["Message-ID"] == f"<{ORDER}.confirmation@orderflow>"
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and "Total: 37.50 USD" in text.get_content()
    assert html is not None and f"<b>{ORDER}</b>" in html.get_content()


def test_values_are_escaped_in_the_html_body_only() -> None:
    settings = Settings(mail_cancellation_text="$reason", mail_cancellation_html="<p>$reason</p>")

    message = compose(
        notice(NotificationKind.CANCELLATION, reason="A<B"), "o@s.example", templates_of(settings)["cancellation"]
    )

    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and text.get_content().strip() == "A<B"
    assert html is not None and html.get_content().strip() == "<p>A&lt;B</p>"


@pytest.mark.parametrize("template", ["Order $order_idx", "Total: $", "${totl}"])
def test_a_template_naming_an_unknown_field_is_refused_at_start_up(template: str) -> None:
    with pytest.raises(ValidationError, match="a mail template may name only"):
        Settings(mail_confirmation_subject=template)


def test_notifier_smtp_without_a_host_is_refused_in_one_line() -> None:
    settings = Settings(
        database_url="postgresql://u@h/d",
        carrier_api_base="http://c",
        stripe_api_base="http://s",
        notifier="smtp",
        smtp_host=None,  # not the test run's mail server, which the integration fixtures export
    )

    with pytest.raises(RuntimeError) as refused:
        check_adapter_settings(settings)

    assert (
        str(refused.value) == "NOTIFIER=smtp but SMTP_HOST is not set: set SMTP_HOST (and SMTP_PORT), or NOTIFIER=local"
    )
    check_adapter_settings(settings.model_copy(update={"smtp_host": "mail.example"}))

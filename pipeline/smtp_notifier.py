"""Customer e-mail over SMTP (standard library smtplib), with the mail server's answers mapped at the boundary.

The Message-ID is made from the notice's idempotency key, so a resend after a crash (the step ran, the worker
died before its commit) carries the same id as the first message and a mail client or an operator can tell
the two apart from two different messages. SMTP itself has no idempotency: the resend is a second delivery.
"""

from __future__ import annotations

import html
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from string import Template

import structlog

from pipeline import metrics
from pipeline.config import Settings
from pipeline.errors import EmailDeferred, EmailRejected, MailerUnauthorized, PipelineError, TransientError
from pipeline.notify import Notice

log = structlog.get_logger("orderflow.email")

NO_ADDRESS = "no-address"  # the reference of a notice with nobody to send it to
# ISO 4217 currencies without minor units (Stripe's list): their totals are written without decimals.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)


@dataclass(frozen=True)
class MailTemplate:
    """Subject, plain-text and HTML bodies of one kind of message (string.Template, fields in config.MAIL_FIELDS)."""

    subject: str
    text: str
    html: str


def templates_of(settings: Settings) -> dict[str, MailTemplate]:
    """The configured templates by notification kind."""
    return {
        kind: MailTemplate(*(getattr(settings, f"mail_{kind}_{part}") for part in ("subject", "text", "html")))
        for kind in ("confirmation", "cancellation")
    }


def message_id(idempotency_key: str) -> str:
    """The Message-ID of every message sent under this key: the key, with characters not allowed there replaced."""
    local = "".join(c if c.isalnum() or c in "!#$%&'*+-/=?^_`{|}~." else "." for c in idempotency_key)
    return f"<{local}@orderflow>"


def major_units(cents: int, currency: str) -> str:
    """An amount in minor units as the customer reads it: 3750 USD is "37.50", 50 JPY is "50"."""
    return str(cents) if currency in ZERO_DECIMAL else f"{cents // 100}.{cents % 100:02d}"


def compose(notice: Notice, sender: str, template: MailTemplate) -> EmailMessage:
    """The message for a notice with an address: From, To, Subject, Message-ID, text and HTML alternatives."""
    assert notice.email is not None
    fields = {
        "order_id": str(notice.order_id),
        "user_id": notice.user_id,
        "total": major_units(notice.total_cents, notice.currency),
        "currency": notice.currency,
        "lines": str(notice.lines),
        "reason": notice.reason or "",
    }
    message = EmailMessage()
    message["From"] = sender
    message["To"] = notice.email
    message["Subject"] = Template(template.subject).substitute(fields)
    message["Message-ID"] = message_id(notice.idempotency_key)
    message.set_content(Template(template.text).substitute(fields))
    escaped = {name: html.escape(value) for name, value in fields.items()}
    message.add_alternative(Template(template.html).substitute(escaped), subtype="html")
    return message


def mail_error(error: Exception) -> PipelineError:
    """The pipeline's error for what smtplib raised: 4xx and lost connections are transient, 5xx permanent."""
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return MailerUnauthorized(f"SMTP login refused: {error.smtp_code}", smtp_code=error.smtp_code)
    if isinstance(error, smtplib.SMTPResponseException):
        code, text = error.smtp_code, _text(error.smtp_error)
    elif isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        code, raw = next(iter(error.recipients.values()))
        text = _text(raw)
    else:  # disconnected, refused, timed out, TLS failed, or a server that lacks what we asked for
        return TransientError(f"SMTP: {type(error).__name__}: {error}"[:500], provider="smtp")
    if 500 <= code < 600:
        return EmailRejected(f"SMTP {code}: {text}"[:500], smtp_code=code)
    return EmailDeferred(f"SMTP {code}: {text}"[:500], smtp_code=code)


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


class SmtpNotifier:
    """Sends each notice as one e-mail through one SMTP server; a notice with no address is skipped."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        templates: Mapping[str, MailTemplate],
        timeout_s: float = 10.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port, self.sender, self.templates = host, port, sender, dict(templates)
        self.timeout_s, self.starttls, self.username, self.password = timeout_s, starttls, username, password

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpNotifier:
        assert settings.smtp_host is not None, "check_adapter_settings refuses smtp without a host"
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.mail_from,
            templates=templates_of(settings),
            timeout_s=settings.smtp_timeout_s,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=password,
        )

    def send(self, notice: Notice) -> str:
        kind, order_id = notice.kind.value, str(notice.order_id)
        if notice.email is None:
            metrics.EMAILS.labels(kind, "no_address").inc()
            log.info("email.skipped", order_id=order_id, kind=kind, reason="no address")
            return NO_ADDRESS
        message = compose(notice, self.sender, self.templates[kind])
        started = time.perf_counter()
        try:
            self._deliver(message)
        except (smtplib.SMTPException, OSError) as error:
            mapped = mail_error(error)
            outcome = "rejected" if not isinstance(mapped, TransientError) else "deferred"
            metrics.EMAILS.labels(kind, outcome).inc()
            log.warning("email.failed", order_id=order_id, kind=kind, code=mapped.code, error=mapped.message)
            raise mapped from error
        metrics.EMAILS.labels(kind, "sent").inc()
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        log.info("email.sent", order_id=order_id, kind=kind, message_id=message["Message-ID"], ms=elapsed_ms)
        return str(message["Message-ID"])

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
            if self.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.username is not None:
                client.login(self.username, self.password or "")
            client.send_message(message)

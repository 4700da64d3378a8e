"""A real SMTP server (aiosmtpd) that keeps every message it receives: the local stack's and the tests' mailbox.

`MailSink` runs on a free loopback port in a background thread (a context manager, like the fake Stripe);
`fail_next(n, code)` makes it answer the next n messages' DATA with a 4xx (try later) or 5xx (refused) reply,
so a test can show what the notifier does with each. `python -m scripts.devstack.mail_sink --port 2525` runs
one in the foreground and logs each message it receives; with `--http-port 2526` it also shows them as JSON at
`http://127.0.0.1:2526/messages` (newest last; `?to=address` for one recipient's), for a person or the demo.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

from scripts.devstack.localstack import free_port

log = logging.getLogger("orderflow.mail_sink")


@dataclass(frozen=True)
class Received:
    """One message as the server took it: the envelope, and the message parsed (policy `email.policy.default`)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    def as_json(self) -> dict[str, Any]:
        """What a person checks: the envelope, the headers the notifier sets, and the plain-text body."""
        text = self.message.get_body(preferencelist=("plain",))
        return {
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.message["Subject"],
            "messageId": self.message["Message-ID"],
            "date": self.message["Date"],
            "text": text.get_content() if isinstance(text, EmailMessage) else None,
        }


class _Keeper:
    """aiosmtpd's handler: keeps each message, or answers the next queued fault instead."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.faults: deque[str] = deque()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=default).parsebytes(raw if isinstance(raw, bytes) else raw.encode())
        assert isinstance(message, EmailMessage)
        kept = Received(envelope.mail_from, tuple(envelope.rcpt_tos), message)
        with self.lock:
            self.received.append(kept)
        log.info("mail_sink.received from=%s to=%s subject=%r", kept.mail_from, kept.rcpt_tos, message["Subject"])
        return "250 OK: kept"


class MailSink:
    """An SMTP server on 127.0.0.1 (a free port unless given) that keeps what it receives."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._keeper = _Keeper()
        self._controller = Controller(self._keeper, hostname=host, port=self.port, enable_SMTPUTF8=True)

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def messages(self) -> list[Received]:
        """Every message kept since the last reset, oldest first."""
        with self._keeper.lock:
            return list(self._keeper.received)

    def to(self, address: str) -> list[Received]:
        """The messages whose envelope names this recipient."""
        return [kept for kept in self.messages if address in kept.rcpt_tos]

    def fail_next(self, count: int, code: int = 451, text: str = "injected fault") -> None:
        """Answer the next `count` messages' DATA with `code` (4xx: try again later, 5xx: refused for good)."""
        if not 400 <= code < 600:
            raise ValueError(f"a fault is a 4xx or 5xx reply, not {code}")
        with self._keeper.lock:
            self._keeper.faults.extend(f"{code} {text}" for _ in range(count))

    def reset(self) -> None:
        """Forget every message and every queued fault."""
        with self._keeper.lock:
            self._keeper.received.clear()
            self._keeper.faults.clear()


def mailbox_view(sink: MailSink, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering GET /messages with the sink's messages as JSON (serve it from a thread)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/messages":
                self._answer(404, {"error": "not found: the messages are at /messages"})
                return
            to = parse_qs(url.query).get("to")
            kept = sink.to(to[0]) if to else sink.messages
            self._answer(200, {"messages": [message.as_json() for message in kept]})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            encoded = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: Any) -> None:  # the sink logs the messages, not the reads
            return

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    """Run a sink in the foreground until interrupted (SMTP_HOST=127.0.0.1, SMTP_PORT=--port)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--http-port", type=int, help="also show the messages as JSON at /messages on this port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with MailSink(args.host, args.port) as sink:
        log.info("mail_sink.listening on %s:%d", args.host, args.port)
        if args.http_port:
            view = mailbox_view(sink, args.host, args.http_port)
            threading.Thread(target=view.serve_forever, daemon=True).start()
            log.info("mail_sink.messages at http://%s:%d/messages", args.host, args.http_port)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

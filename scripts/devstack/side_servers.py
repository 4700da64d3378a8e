"""The local servers beside the Procfile's, for `orderctl serve` and `orderctl demo`: now one, the SMTP sink.

`mail_sink` starts the sink (scripts/devstack/mail_sink.py) as a child process and yields what the Procfile's
processes need to reach it, the line to print about it, and the URL that shows what it received.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack.localstack import StackError, free_port
from scripts.devstack.processes import Child, python


@dataclass(frozen=True)
class SideServer:
    """A started server: the settings that point the workers at it, what to print, and where to look."""

    env: dict[str, str]
    line: str
    view_url: str


@contextmanager
def mail_sink(log_dir: Path, smtp_port: int) -> Iterator[SideServer]:
    """The SMTP sink the workers' notifier sends to, with its messages as JSON on a free port; stopped on exit."""
    view_port = free_port()
    argv = python("-m", "scripts.devstack.mail_sink", "--port", str(smtp_port), "--http-port", str(view_port))
    sink = Child("mail_sink", argv, dict(os.environ), log_dir).start()
    try:
        for port in (smtp_port, view_port):
            wait_for_port(port, sink, f"the SMTP sink did not start; see {log_dir / 'mail_sink.log'}")
        # No STARTTLS and no login: the sink offers neither, whatever a developer's shell has for a real server.
        env = {"NOTIFIER": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port)}
        env |= {"SMTP_STARTTLS": "false", "SMTP_USERNAME": "", "SMTP_PASSWORD": ""}
        view_url = f"http://127.0.0.1:{view_port}/messages"
        line = (
            f"e-mails      SMTP sink at 127.0.0.1:{smtp_port} (the workers' NOTIFIER=smtp, SMTP_HOST, SMTP_PORT);"
            f" what it received: {view_url} (each message is also logged to {log_dir / 'mail_sink.log'})"
        )
        yield SideServer(env, line, view_url)
    finally:
        sink.stop()


def wait_for_port(port: int, child: Child, failure: str, seconds: float = 15) -> None:
    """Until something accepts on the loopback port; StackError(failure) if the child dies or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not child.alive or time.monotonic() > deadline:
                raise StackError(failure) from None
        time.sleep(0.05)

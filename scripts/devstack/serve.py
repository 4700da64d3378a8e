"""`orderctl serve`: the whole local stack, up until Ctrl-C, with the URLs and tokens to use it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console

from pipeline.config import LOCAL_STRIPE_KEY
from scripts.devstack import localstack
from scripts.devstack.localstack import Stack, StackError
from scripts.devstack.processes import Child, python
from scripts.devstack.procfile import LOCAL_WEBHOOK_SECRET, Ports, running_procfile, stop, url

console = Console()
TOKEN_TTL_S = 24 * 3600


def run(stack: Stack, ports: Ports, smtp_port: int, processes: int, threads: int) -> None:
    """Run the stack until SIGINT or SIGTERM, then stop it; StackError if it stopped by itself or not in time."""
    log_path = stack.root / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = f"API, {processes} workers x {threads} threads, reaper, loopback Stripe, local carrier, SMTP sink"
    console.print(f"starting {started}", soft_wrap=True)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)  # while starting, SIGTERM stops what started, as Ctrl-C does
    try:
        with extra_servers(log_path.parent, smtp_port) as (extra_env, extra_lines):
            with running_procfile(stack, ports, log_path, processes, threads, extra_env) as honcho:
                show(ports, log_path, extra_lines)
                received = wait_for_signal(honcho)
                if received is None:
                    raise StackError(f"the stack stopped by itself (honcho exit {honcho.returncode}); see {log_path}")
                console.print(f"{received}: stopping; the workers finish the messages they hold ...")
                in_time = stop(honcho)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    killed = re.findall(r"sending SIGKILL to (\S+)", log_path.read_text(errors="replace"))
    if not in_time or killed:
        raise StackError(f"stopped, but {', '.join(killed) or 'honcho'} had to be killed; see {log_path}")
    console.print("goodbye: every process stopped cleanly")


@contextmanager
def extra_servers(log_dir: Path, smtp_port: int) -> Iterator[tuple[dict[str, str], list[str]]]:
    """The one place for local servers beside the Procfile's: starts them, yields the settings the Procfile's
    processes need to reach them and the lines to print about them, and stops them on the way out.

    Now one: the SMTP sink (scripts/devstack/mail_sink.py), which the workers' notifier sends to.
    """
    sink = Child(
        "mail_sink", python("-m", "scripts.devstack.mail_sink", "--port", str(smtp_port)), dict(os.environ), log_dir
    )
    sink.start()
    try:
        _wait_for_port(smtp_port, sink, f"the SMTP sink did not start; see {log_dir / 'mail_sink.log'}")
        # No STARTTLS and no login: the sink offers neither, whatever a developer's shell has for a real server.
        settings = {"NOTIFIER": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port)}
        settings |= {"SMTP_STARTTLS": "false", "SMTP_USERNAME": "", "SMTP_PASSWORD": ""}
        line = (
            f"e-mails      SMTP sink at 127.0.0.1:{smtp_port} (the workers' NOTIFIER=smtp, SMTP_HOST, SMTP_PORT);"
            f" it logs each message it keeps (from, to, subject) to {log_dir / 'mail_sink.log'}"
        )
        yield settings, [line]
    finally:
        sink.stop()


def show(ports: Ports, log_path: Path, extra_lines: list[str]) -> None:
    """Print where everything is, with an admin and a shop token (minted as `orderctl token` does)."""
    from api.auth import mint_for
    from pipeline.config import get_settings

    api, stripe, carrier = url(ports.api), url(ports.stripe), url(ports.carrier)
    settings = get_settings()
    lines = [
        f"API          {api}",
        f"API docs     {api}/docs",
        f"admin token  {mint_for(settings, 'local-admin', ['admin'], TOKEN_TTL_S)}",
        f"shop token   {mint_for(settings, 'local-shop', ['orders:write', 'orders:read'], TOKEN_TTL_S)}",
        f"             (valid {TOKEN_TTL_S // 3600} h; `orderctl token --client ID --scope S` mints more)",
        f"Stripe       {stripe} (API key {LOCAL_STRIPE_KEY}; its events: {stripe}/_control/events)",
        f"webhooks     signed with {LOCAL_WEBHOOK_SECRET} (FAKE_STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET),"
        f" forwarded to {api}/v1/webhooks/stripe (FAKE_STRIPE_WEBHOOK_URL)",
        f"carrier      {carrier} (its shipments: {carrier}/_control/ledger)",
        *extra_lines,
        f"metrics      {ports.metrics_line()}",
        f"logs         {log_path}",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    console.print("ready; Ctrl-C stops everything", highlight=False)


def wait_for_signal(honcho: subprocess.Popen[bytes]) -> str | None:
    """Block until SIGINT or SIGTERM arrives (its name) or honcho exits by itself (None); later ones are ignored."""
    received: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _: received.append(number))
    while not received and honcho.poll() is None:
        time.sleep(0.2)
    return signal.Signals(received[0]).name if received else None


@contextmanager
def own_servers(root: Path) -> Iterator[None]:
    """Stop the embedded Postgres and Redis on the way out if this run started them (ones already up stay up)."""
    started_here = not localstack.running(root)
    try:
        yield
    finally:
        if started_here and localstack.running(root):
            localstack.stop(root)


def _wait_for_port(port: int, child: Child, failure: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not child.alive or time.monotonic() > deadline:
                raise StackError(failure) from None
        time.sleep(0.05)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

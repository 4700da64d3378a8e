"""`orderctl serve`: the whole local stack, up until Ctrl-C, with the URLs and tokens to use it."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console

from pipeline.config import LOCAL_STRIPE_KEY
from scripts.devstack import localstack, side_servers
from scripts.devstack.localstack import Stack, StackError
from scripts.devstack.procfile import LOCAL_WEBHOOK_SECRET, Ports, running_procfile, stop, url

console = Console()
TOKEN_TTL_S = 24 * 3600


def run(stack: Stack, ports: Ports, smtp_port: int, processes: int, threads: int) -> None:
    """Run the stack until SIGINT or SIGTERM, then stop it; StackError if it stopped by itself or not in time."""
    log_path = stack.root / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    workers = f"{processes} workers x {threads} threads, webhook workers"
    console.print(f"starting API, {workers}, reaper, loopback Stripe, local carrier, SMTP sink", soft_wrap=True)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)  # while starting, SIGTERM stops what started, as Ctrl-C does
    try:
        with side_servers.mail_sink(log_path.parent, smtp_port) as mail:
            with running_procfile(stack, ports, log_path, processes, threads, mail.env) as honcho:
                show(ports, log_path, [mail.line])
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


def show(ports: Ports, log_path: Path, extra_lines: list[str]) -> None:
    """Print where everything is, with an admin and a shop token (minted as `orderctl token` does)."""
    from api.auth import mint_for
    from pipeline.config import get_settings

    api, stripe, carrier = url(ports.api), url(ports.stripe), url(ports.carrier)
    settings = get_settings()
    lines = [
        f"API          {api}",
        f"API docs     {api}/docs",
        f"console      {api}/console (sign in with the admin token)",
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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

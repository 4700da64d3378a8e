"""`orderctl serve`: the whole local stack up until Ctrl-C, used through nothing but what it prints."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from scripts.devstack import localstack
from scripts.devstack.procfile import Ports
from tests.factories import GOOD_ADDRESS
from tests.stack_folders import private_stack_folder

READY = "ready; Ctrl-C stops everything"


def start_serve(stack_dir: Path, ports: Ports, smtp_port: int) -> subprocess.Popen[str]:
    """`orderctl serve` in a session of its own (as a terminal runs it), on its own embedded servers."""
    named = ports.named() | {"SMTP_PORT": smtp_port}
    options = [f"--{name.lower().replace('_', '-')}={port}" for name, port in named.items()]
    command = [sys.executable, "-c", "from scripts.orderctl import main; main()", "serve", *options, "--processes=1"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"STACK_DIR": str(stack_dir), "PYTHONUNBUFFERED": "1", "COLUMNS": "80"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's output, line by line, as it comes."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        with stdout:  # closed at the end of the output: when serve and every child holding it have exited
            for line in stdout:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines: queue.Queue[str], last: str, timeout_s: float) -> str:
    printed, deadline = "", time.monotonic() + timeout_s
    while not printed.endswith(last + "\n"):
        try:
            printed += lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {last!r} within {timeout_s} s; printed so far:\n{printed}") from None
    return printed


def printed_value(printed: str, label: str) -> str:
    match = re.search(rf"^{label}\s+(\S+)", printed, re.MULTILINE)
    assert match, printed
    return match[1]


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    with private_stack_folder("orderflow-serve-") as root:
        yield root


def test_serve_stays_up_an_order_placed_with_its_token_ships_and_ctrl_c_stops_everything(stack_dir: Path) -> None:
    ports, smtp_port = Ports.free(), localstack.free_port()
    process = start_serve(stack_dir, ports, smtp_port)
    try:
        lines = lines_of(process)
        printed = read_until(lines, READY, timeout_s=60)
        api = printed_value(printed, "API")
        admin = {"Authorization": f"Bearer {printed_value(printed, 'admin token')}"}
        shop = {"Authorization": f"Bearer {printed_value(printed, 'shop token')}"}

        product = httpx.post(
            f"{api}/v1/products",
            headers=admin,
            json={"sku": f"serve-{uuid.uuid4().hex[:8]}", "name": "Mug", "price": 1250, "stock": 5},
        )
        order = httpx.post(
            f"{api}/v1/orders",
            headers=shop | {"Idempotency-Key": str(uuid.uuid4())},
            json={
                "userId": "serve-user",
                "items": [{"productId": product.json()["id"], "quantity": 1, "price": 1250}],
                "shippingAddress": GOOD_ADDRESS,
                "paymentMethodId": "pm_card_visa",
                "email": "shopper@example.com",
            },
        )
        assert (product.status_code, order.status_code) == (201, 201), order.text
        for attempt in Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.2), reraise=True):
            with attempt:
                status = httpx.get(f"{api}/v1/orders/{order.json()['id']}", headers=shop).json()["status"]
                assert status == "shipped"
        mailbox = re.search(r"what it received: (\S+)", printed)
        assert mailbox, printed
        received = httpx.get(mailbox[1], params={"to": "shopper@example.com"}).json()["messages"]
        with httpx.Client(base_url=api) as browser:  # the operator console, signed in with the printed token
            browser.post("/console/sign-in", data={"token": admin["Authorization"].removeprefix("Bearer ")})
            story = browser.get(f"/console/orders/{order.json()['id']}")

        os.killpg(process.pid, signal.SIGINT)
        returncode = process.wait(timeout=50)
        goodbye = read_until(lines, "goodbye: every process stopped cleanly", timeout_s=5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert returncode == 0, goodbye
    assert f"API docs     {api}/docs" in printed
    assert f"console      {api}/console (sign in with the admin token)" in printed
    assert story.status_code == 200 and 'id="order-status">shipped<' in story.text
    assert f"{api}/v1/webhooks/stripe" in printed and ports.metrics_line() in printed
    mail_log = stack_dir / "mail_sink.log"
    assert f"SMTP sink at 127.0.0.1:{smtp_port}" in printed and str(mail_log) in printed
    assert "to=('shopper@example.com',)" in mail_log.read_text()  # the confirmation, through the real notifier
    assert [message["to"] for message in received] == [["shopper@example.com"]]
    assert "order" in received[0]["subject"].lower() and received[0]["text"], received
    assert all(localstack.port_free(port) for port in [*ports.named().values(), smtp_port])
    assert not localstack.running(stack_dir)  # serve started the embedded servers, so it stopped them too


def test_a_taken_port_is_one_error_line_and_exit_1_before_anything_starts(tmp_path: Path) -> None:
    ports = Ports.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.carrier))
        taken.listen()
        process = start_serve(tmp_path / "stack", ports, localstack.free_port())
        output, _ = process.communicate(timeout=30)

    assert (process.returncode, output) == (
        1,
        f"error: port {ports.carrier} (CARRIER_PORT) is taken: stop what listens there, or choose another port\n",
    )
    assert not (tmp_path / "stack").exists()

"""`python -m api.serve`: N API processes on one port, with TCP_NODELAY on every accepted connection."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import uvloop
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from api.serve import listener
from scripts.devstack.localstack import free_port, port_free
from scripts.devstack.processes import SOURCE_ROOT
from tests.conftest import Servers


async def nodelay_of_accepted(server_socket: socket.socket) -> int:
    """TCP_NODELAY of the socket asyncio accepts on this listener (what a request and its answer travel on)."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(connected, sock=server_socket)
    async with server:
        _, writer = await asyncio.open_connection(*server_socket.getsockname())
        found = await asyncio.wait_for(accepted, 5)
        writer.close()
    return found


def test_connections_accepted_on_our_listener_get_tcp_nodelay_and_on_uvicorns_bound_socket_do_not() -> None:
    uvicorn_style = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn's bind_socket makes it
    uvicorn_style.bind(("127.0.0.1", 0))
    uvicorn_style.listen()

    assert asyncio.run(nodelay_of_accepted(listener("127.0.0.1", 0))) == 1
    assert asyncio.run(nodelay_of_accepted(uvicorn_style)) == 0  # uvicorn #3149: Nagle left on


def test_under_uvloop_which_uvicorn_picks_when_installed_our_listener_s_connections_get_tcp_nodelay_too() -> None:
    assert uvloop.run(nodelay_of_accepted(listener("127.0.0.1", 0))) == 1


def test_two_api_processes_share_the_port_both_take_connections_and_sigterm_stops_them(servers: Servers) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["API_METRICS_PORT"] = str(free_port())
    command = [sys.executable, "-m", "api.serve", "--processes", "2", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=SOURCE_ROOT, start_new_session=True)
    connections = []
    try:
        for attempt in Retrying(
            stop=stop_after_delay(60), wait=wait_fixed(0.2), retry=retry_if_exception_type(OSError), reraise=True
        ):
            with attempt:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        for _ in range(24):  # new connections, each kept open after its request
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() is not None
            connections.append(connection)
        children = psutil.Process(process.pid).children()  # the API processes, and multiprocessing's tracker
        serving = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
        held = [
            sum(1 for c in child.net_connections("tcp") if c.laddr.port == port and c.status == "ESTABLISHED")
            for child in serving
        ]
        # uvicorn picks uvloop and httptools when they are installed: a quarter less API CPU per order.
        loaded = [{Path(m.path).parts[-2] for m in child.memory_maps() if ".cpython-" in m.path} for child in serving]
    finally:
        for connection in connections:
            connection.close()
        process.send_signal(signal.SIGTERM)
        code = process.wait(45)

    assert len(held) == 2 and sum(held) == 24
    assert all({"uvloop", "parser"} <= modules for modules in loaded), loaded  # httptools/parser/parser.*.so
    assert min(held) >= 4, f"the kernel spreads connections across both processes: {held}"
    assert code == 0 and port_free(port)


def test_a_port_another_process_listens_on_is_refused_in_one_line_even_with_so_reuseport() -> None:
    taken = listener("127.0.0.1", 0)  # an API left running, its listener with SO_REUSEPORT too
    port = taken.getsockname()[1]
    command = [sys.executable, "-m", "api.serve", "--port", str(port)]
    finished = subprocess.run(command, cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=60)
    taken.close()

    assert finished.returncode == 1
    assert finished.stderr.strip() == f"orderflow API: cannot listen on 127.0.0.1:{port}: Address already in use"

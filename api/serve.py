"""`python -m api.serve`: the intake API in N processes on one port, each a uvicorn server with TCP_NODELAY.

uvicorn's own `--workers N` binds the listening socket in its parent with `proto` 0; accepted connections inherit
it, and asyncio turns TCP_NODELAY on only for sockets that say IPPROTO_TCP, so every keep-alive request after
the first waits ~40 ms on the client's delayed ACK (uvicorn #3149). Here every process binds a listener of its
own with IPPROTO_TCP and SO_REUSEPORT: accepted connections get TCP_NODELAY, and the kernel spreads new
connections across the processes (a shared accept queue lets one busy process take most of them).

With more than one process their metrics go to files in a folder of their own (PROMETHEUS_MULTIPROC_DIR), and
the one that binds API_METRICS_PORT serves them all (api/metrics.py). A process that dies stops the others: the
supervisor above (honcho, Kubernetes) restarts the whole API, which is simpler than half of one.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Annotated

import typer
import uvicorn

GRACE_S = 30.0  # uvicorn finishes the requests in flight, then exits


def listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket that says IPPROTO_TCP (so accepted ones get TCP_NODELAY) and shares its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def ensure_free(host: str, port: int) -> None:
    """Refuse a port something already listens on: with SO_REUSEPORT a second API (an old one left running)
    would share it silently, and the kernel would hand it half of the connections."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection's TIME_WAIT is no owner
    try:
        probe.bind((host, port))
    except OSError as error:
        raise SystemExit(f"orderflow API: cannot listen on {host}:{port}: {error.strerror}") from None
    finally:
        probe.close()


def serve_one(host: str, port: int, log_level: str) -> None:
    """One API process: the app from its factory, on a listener of its own."""
    config = uvicorn.Config("api.app:create_app", factory=True, log_level=log_level, lifespan="on")
    uvicorn.Server(config).run(sockets=[listener(host, port)])


def main(
    processes: Annotated[int, typer.Option(min=1, envvar="API_PROCESSES", help="API processes on the port.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="API_PORT", help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve the intake API from `processes` processes on host:port; SIGTERM or Ctrl-C stops them all."""
    ensure_free(host, port)
    if processes == 1:
        return serve_one(host, port, log_level)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="orderflow-api-metrics-"))
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: nothing from this one's imports
    children = [spawn.Process(target=serve_one, args=(host, port, log_level)) for _ in range(processes)]
    for child in children:
        child.start()
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _: stopping.append(number))
    while not stopping and all(child.is_alive() for child in children):
        time.sleep(0.2)
    code = _stop(children)
    if not stopping:
        raise SystemExit(f"an API process exited ({code}); stopped the others")


def _stop(children: Sequence[BaseProcess]) -> int | None:
    """SIGTERM every child still running, SIGKILL what outlives the grace time; the first exit code seen."""
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
    return next((child.exitcode for child in children if child.exitcode), None)


if __name__ == "__main__":
    typer.run(main)

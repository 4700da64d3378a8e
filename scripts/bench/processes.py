"""The processes a bench run measures (Dramatiq workers, the loopback Stripe, the API), each in its own session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen, TimeoutExpired

import redis

from scripts.devstack import localstack
from scripts.devstack.processes import Child, python, wait_until_answers

# Settings that would make a run something other than the happy path; the bench clears them.
FAULT_ENV = ("FAKE_STRIPE_", "FAKE_CARRIER_", "NOTIFY_FAULT_RATE", "STEP_RETRIES")


@contextmanager
def dramatiq_workers(
    module: str, processes: int, threads: int, env: dict[str, str], log_dir: Path, name: str
) -> Iterator[Popen[bytes]]:
    """`dramatiq <module> --processes P --threads T` in its own session; SIGTERM (then SIGKILL) on exit."""
    argv = python("-m", "dramatiq", module, "--processes", str(processes), "--threads", str(threads))
    with _running(Child(name, argv, env, log_dir)) as process:
        yield process


@contextmanager
def fake_stripe(log_dir: Path, name: str, module: str = "scripts.fake_stripe") -> Iterator[tuple[str, Popen[bytes]]]:
    """The loopback Stripe (or, by module, the local carrier) as its own process, no faults; yields (url, process)."""
    port = localstack.free_port()
    argv = python("-m", module, "--port", str(port))
    with _running(Child(name, argv, clean_env(), log_dir)) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/_control/ledger", process, 30, f"{process.args!r} did not answer on {url}")
        yield url, process


@contextmanager
def api_server(env: dict[str, str], log_dir: Path, name: str, processes: int = 1) -> Iterator[tuple[str, Popen[bytes]]]:
    """The real API as the Procfile runs it (`python -m api.serve`, `processes` of it on one port); yields (base
    url, process) once /healthz answers."""
    port = localstack.free_port()
    argv = python("-m", "api.serve", "--processes", str(processes), "--port", str(port), "--log-level", "warning")
    env = env | {"API_METRICS_PORT": str(localstack.free_port())}
    with _running(Child(name, argv, env, log_dir)) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{base}/healthz", process, 30, f"{process.args!r} did not answer on {base}")
        yield base, process


@contextmanager
def _running(child: Child) -> Iterator[Popen[bytes]]:
    (child.log_dir / f"{child.name}.log").unlink(missing_ok=True)  # one file per process and repetition, latest run
    process = child.start().process
    assert process is not None
    try:
        yield process
    finally:
        _stop(child, process)


def _stop(child: Child, process: Popen[bytes]) -> None:
    """SIGTERM to the main process only (dramatiq's forwards it once: a second one would kill its workers hard)."""
    process.terminate()
    try:
        process.wait(60)
    except TimeoutExpired:
        pass
    child.kill()  # SIGKILL to whatever is left of the session


def wait_for_workers(
    redis_url: str, namespace: str, processes: int, workers: Popen[bytes], timeout_s: float = 90
) -> None:
    """Until every worker process has fetched from Redis (each one heartbeats under its own broker id)."""
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(redis_url) as client:
        while client.zcard(f"{namespace}:__heartbeats__") < processes:
            if workers.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not come up; see the log of {workers.args!r}")
            time.sleep(0.05)


def clean_env() -> dict[str, str]:
    """This process's environment without the fault settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith(FAULT_ENV)}

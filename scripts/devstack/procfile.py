"""The Procfile under honcho, wired to the local stack: what `orderctl demo` and `orderctl serve` both run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from scripts.devstack.localstack import Stack, StackError, free_port, port_free
from scripts.devstack.processes import SOURCE_ROOT, python, wait_until_answers

# The loopback Stripe signs the events it forwards with this, and the API checks them with it.
LOCAL_WEBHOOK_SECRET = "whsec_orderflow_local_only"
# Honcho's wait from the first process stopping to SIGKILLing the rest: more than the autoscaler's grace
# (AUTOSCALE_GRACE_S, 30 s) for its workers to finish their messages (scripts/devstack/honcho_start.py).
KILL_WAIT_S = 35.0
STOP_GRACE_S = KILL_WAIT_S + 10.0


@dataclass(frozen=True)
class Ports:
    """Where the Procfile's processes listen, each named as its option and environment variable are."""

    api: int
    stripe: int
    carrier: int
    api_metrics: int
    worker_metrics: int
    reaper_metrics: int
    webhook_metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in fields(cls)))

    def named(self) -> dict[str, int]:
        """Each port by its environment variable (API_PORT, ...), the name the Procfile and the settings read."""
        return {f"{name.upper()}_PORT": port for name, port in vars(self).items()}

    def metrics_line(self) -> str:
        api, workers, reaper = url(self.api_metrics), url(self.worker_metrics), url(self.reaper_metrics)
        webhooks = url(self.webhook_metrics)
        return f"API {api}/metrics, workers {workers}/metrics, reaper {reaper}/metrics, webhooks {webhooks}/metrics"


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def check_free(named: dict[str, int]) -> None:
    """Raise StackError naming the first port (by its variable, API_PORT, ...) that is taken, or given twice."""
    seen: dict[int, str] = {}
    for name, port in named.items():
        if port in seen:
            raise StackError(f"port {port} is given for both {seen[port]} and {name}")
        if not port_free(port):
            raise StackError(f"port {port} ({name}) is taken: stop what listens there, or choose another port")
        seen[port] = name


def procfile_env(stack: Stack, ports: Ports, metrics_dir: Path, processes: int, threads: int) -> dict[str, str]:
    """The environment of the Procfile's processes: the servers, the ports, the local providers, no faults."""
    api, stripe, carrier = url(ports.api), url(ports.stripe), url(ports.carrier)
    # The workers' metrics folder is WORKER_METRICS_DIR: an inherited one would mix every process's metrics.
    inherited = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
    return (
        inherited
        | {k: str(v) for k, v in ports.named().items()}
        | {
            "DATABASE_URL": stack.database_url,
            "REDIS_URL": stack.redis_url,
            # The API reads the local signing secret from here, as the orderctl that mints the tokens does.
            "STACK_DIR": str(stack.root.resolve()),
            "STRIPE_API_BASE": stripe,
            "STRIPE_API_KEY": LOCAL_STRIPE_KEY,
            "STRIPE_TIMEOUT_S": "2",
            "WORKER_PROCESSES": str(processes),
            "WORKER_THREADS": str(threads),
            "STEP_LEASE_S": "15",
            "REAPER_INTERVAL_S": "2",
            "WORKER_METRICS_DIR": str(metrics_dir / "saga"),
            "WEBHOOK_METRICS_DIR": str(metrics_dir / "webhooks"),
            "CARRIER_API_BASE": carrier,
            "CARRIER_API_KEY": LOCAL_CARRIER_KEY,
            "CARRIER_TIMEOUT_S": "2",
            # Stripe forwards its signed events to the API, as `stripe listen --forward-to` does.
            "STRIPE_WEBHOOK_SECRET": LOCAL_WEBHOOK_SECRET,
            "FAKE_STRIPE_WEBHOOK_SECRET": LOCAL_WEBHOOK_SECRET,
            "FAKE_STRIPE_WEBHOOK_URL": f"{api}/v1/webhooks/stripe",
            # A shop's endpoint on this machine (a receiver you run yourself) is allowed here, never in production.
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1", "localhost"]',
        }
    )


@contextmanager
def running_procfile(
    stack: Stack, ports: Ports, log_path: Path, processes: int, threads: int, extra_env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the Procfile (API, workers, webhook workers, reaper, loopback Stripe, local carrier) under honcho until
    every one answers.

    Yields honcho's process; on the way out everything is stopped (see `stop`). Raises StackError when a
    process does not come up.
    """
    metrics_dir = log_path.parent / "worker-metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # multiprocess files of an earlier run would add up
    metrics_dir.mkdir(parents=True)
    env = procfile_env(stack, ports, metrics_dir, processes, threads) | dict(extra_env or {})
    bin_dir = Path(sys.executable).parent  # the Procfile's commands come from this venv
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if importlib.util.find_spec("honcho") is None:
        raise StackError("honcho is not installed: the local stack runs the Procfile with it, from orderflow[local]")
    honcho = python("-m", "scripts.devstack.honcho_start", "start", "-f", str(SOURCE_ROOT / "Procfile"))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*honcho, "-d", str(SOURCE_ROOT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us alone; we stop honcho
        )
        try:
            for name, ready in (
                ("the API", f"{url(ports.api)}/readyz"),
                ("the loopback Stripe", f"{url(ports.stripe)}/_control/faults"),
                ("the local carrier", f"{url(ports.carrier)}/_control/faults"),
            ):
                try:
                    wait_until_answers(ready, process, 60, f"{name} did not become ready; see {log_path}")
                except RuntimeError as error:
                    raise StackError(str(error)) from None
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM honcho, which SIGTERMs every process (workers finish their messages); True if all stopped in time.

    Honcho SIGKILLs what still runs KILL_WAIT_S after the first process stopped; we SIGKILL honcho after STOP_GRACE_S.
    """
    if process.poll() is not None:  # stopped already: its pid may belong to someone else by now
        return True
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_S)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    except ProcessLookupError:
        return True

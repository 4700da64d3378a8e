"""The autoscaler's worker processes: `dramatiq workers.saga.worker --processes 1 --queues ...` each, in a process
group of its own, consuming only the autoscaler's queues.

A `dramatiq workers.saga.worker` process is a parent that forks the worker process running the actors. Stopping
one means one SIGTERM to the parent: it forwards it, the worker finishes its running messages and
hands its prefetched ones back to Redis. A second SIGTERM would make the worker exit at once, so the
parent alone is signalled, and the whole group is SIGKILLed only once the grace time is over.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("orderflow.autoscaler")

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


@dataclass
class Leaving:
    """A worker on its way out, and when its grace time is over."""

    process: subprocess.Popen[bytes]
    deadline: float
    killed: bool = False


class WorkerPool:
    """The active workers (consuming) and the leaving ones (finishing their messages)."""

    def __init__(self, threads: int, metrics_dir: Path, grace_s: float, queues: Sequence[str]) -> None:
        target = "workers.saga.worker"  # the worker's entry point: installs the broker, declares the actors
        command = [sys.executable, "-m", "dramatiq", target, "--processes", "1", "--threads", str(threads)]
        self.command = [*command, "--queues", *queues]  # only these: the saga's, or the webhooks'
        # Workers write their metrics into the folder through Dramatiq's variable (workers/broker.py);
        # the autoscaler itself keeps PROMETHEUS_MULTIPROC_DIR unset (workers/autoscale/metrics.py).
        self.env = os.environ | {"dramatiq_prom_db": str(metrics_dir)}
        self.grace_s = grace_s
        self.active: list[subprocess.Popen[bytes]] = []
        self.leaving: list[Leaving] = []

    def spawn(self) -> int:
        process = subprocess.Popen(
            self.command, env=self.env, start_new_session=True, preexec_fn=_die_with_parent if _LIBC else None
        )
        self.active.append(process)
        log.info("autoscale.worker_started", pid=process.pid, workers=len(self.active))
        return process.pid

    def retire(self) -> int:
        """Ask the newest worker to stop gracefully; returns its pid."""
        process = self.active.pop()
        _signal(process.pid, signal.SIGTERM)
        self.leaving.append(Leaving(process, time.monotonic() + self.grace_s))
        log.info("autoscale.worker_stopping", pid=process.pid, grace_s=self.grace_s)
        return process.pid

    def reap(self) -> list[tuple[int, int]]:
        """Take out the active workers that exited on their own; returns (pid, exit code) of each."""
        dead = [process for process in self.active if process.poll() is not None]
        for process in dead:
            self.active.remove(process)
            # When the parent was the one killed, its worker lives on, orphaned: stop it gracefully too.
            _signal(-process.pid, signal.SIGTERM)
            self.leaving.append(Leaving(process, time.monotonic() + self.grace_s))
        return [(process.pid, process.returncode) for process in dead]

    def tend(self) -> None:
        """Forget leaving workers whose group is gone; SIGKILL the groups that outstayed their grace."""
        now = time.monotonic()
        for leaving in list(self.leaving):
            pid, exited = leaving.process.pid, leaving.process.poll() is not None
            # After SIGKILL an orphan may stay a zombie if nothing reaps it; it holds no messages any more.
            if exited and (leaving.killed or not _group_alive(pid)):
                self.leaving.remove(leaving)
            elif now > leaving.deadline and not leaving.killed:
                log.warning("autoscale.worker_killed", pid=pid, grace_s=self.grace_s)
                _signal(-pid, signal.SIGKILL)
                leaving.killed = True

    def stop_all(self) -> None:
        """Stop every worker gracefully and wait for them (SIGKILL after the grace time)."""
        while self.active:
            self.retire()
        while self.leaving:
            self.tend()
            time.sleep(0.1)


def _signal(pid: int, signum: signal.Signals) -> None:
    """Signal a process, or with a negative pid its whole group; one already gone is fine."""
    try:
        if pid < 0:
            os.killpg(-pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the autoscaler dies, even by SIGKILL (Linux).

    The workers are in sessions of their own, so nothing else would stop them. The kernel sends it
    when the spawning thread ends, which is the autoscaler's main thread.
    """
    assert _LIBC is not None
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

"""Child processes in their own process groups, so a whole worker (main process and its forks) can be killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

# The checkout the dev tools run from (they are not installed): the children's working directory, the Procfile's.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    """One command we run, restart and kill by name; its output goes to logs/<name>.log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Child:
        with open(self.log_dir / f"{self.name}.log", "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=SOURCE_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown code runs, like an OOM kill or a pulled plug."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self, grace_s: float = 20) -> int | None:
        """SIGTERM the group and wait; SIGKILL what is left after grace_s. Returns the exit code."""
        if not self.alive or self.process is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            return self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def _signal(self, signum: signal.Signals) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit in the main thread, so `finally` blocks stop the children.

    Our children run in sessions of their own (a Ctrl-C or a kill reaches them only through us), so a SIGTERM's
    default action, ending this process at once, would leave them running: a `timeout` around the chaos run or
    the demo left workers and servers behind. Outside the main thread (where no handler can be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_until_answers(url: str, process: subprocess.Popen[bytes] | None, seconds: float, failure: str) -> None:
    """Poll url until it answers 200; raise RuntimeError(failure) if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def python(*args: str) -> list[str]:
    """argv running this venv's Python (the children must use the same installed packages)."""
    return [sys.executable, *args]


def venv_tool(name: str, *args: str) -> list[str]:
    """argv running a console script of this venv (dramatiq, uvicorn)."""
    return [str(Path(sys.executable).parent / name), *args]

"""The dev tools' children (scripts/devstack/processes.py) run in sessions of their own: a SIGTERM to the tool
must still stop them, or a `timeout` around the chaos run or the demo leaves workers and servers behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from scripts.devstack.processes import SOURCE_ROOT

TOOL = """
import os, sys, time
from contextlib import nullcontext
from pathlib import Path
from scripts.devstack.processes import Child, python, sigterm_unwinds

child = Child("sleeper", python("-c", "import time; time.sleep(120)"), dict(os.environ), Path(sys.argv[1]))
with sigterm_unwinds() if sys.argv[2] == "unwinds" else nullcontext():
    child.start()
    try:
        print(child.process.pid, flush=True)
        time.sleep(120)
    finally:
        child.stop()
"""


@pytest.mark.parametrize(("mode", "child_survives"), [("unwinds", False), ("default", True)])
def test_a_sigtermed_tool_stops_its_children_inside_sigterm_unwinds(
    tmp_path: Path, mode: str, child_survives: bool
) -> None:
    command = [sys.executable, "-c", TOOL, str(tmp_path), mode]
    tool = subprocess.Popen(command, cwd=SOURCE_ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert tool.stdout is not None
    sleeper = psutil.Process(int(tool.stdout.readline()))
    try:
        tool.send_signal(signal.SIGTERM)
        code = tool.wait(30)
        try:
            sleeper.wait(10)
        except psutil.TimeoutExpired:
            pass
        survived = sleeper.is_running() and sleeper.status() != psutil.STATUS_ZOMBIE
    finally:
        if sleeper.is_running():
            sleeper.kill()
        tool.stdout.close()

    assert survived is child_survives  # the default action ends the tool at once: its child lives on
    assert code == (1 if mode == "unwinds" else -signal.SIGTERM)

"""Importing a process's modules builds nothing: no broker, no actor declarations, no provider SDK.

Each check runs in a fresh interpreter with no server URLs set, as a process starts before its entry point
has read any settings; the entry point (create_app, the reaper's main, the worker's Dramatiq target) builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ACTOR_MODULES = {
    "workers.saga.actors",
    "workers.saga.step_actors",
    "workers.saga.compensation_actors",
    "workers.saga.worker",
}
PROBE = """
import json, sys, dramatiq.broker
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps({"modules": sorted(sys.modules), "broker": dramatiq.broker.global_broker is not None}))
"""


def imported_by(*modules: str) -> tuple[set[str], bool]:
    """The modules loaded by importing `modules`, and whether a Dramatiq broker was set meanwhile."""
    env = {key: value for key, value in os.environ.items() if not key.endswith(("_URL", "_API_BASE"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    return set(found["modules"]), found["broker"]


@pytest.mark.parametrize("entry", ["api.app", "workers.autoscale"])
def test_the_api_and_the_autoscaler_load_no_actor_no_stripe_and_no_broker(entry: str) -> None:
    modules, broker = imported_by(entry)

    assert not modules & ACTOR_MODULES
    assert "stripe" not in modules
    assert not broker


def test_the_reaper_loads_no_actor_and_builds_no_broker_until_its_main_runs() -> None:
    modules, broker = imported_by("workers.reaper")

    assert not modules & ACTOR_MODULES
    assert not broker


def test_only_the_workers_entry_point_declares_the_actors() -> None:
    env_check = subprocess.run(
        [sys.executable, "-c", "import workers.saga.worker"],
        env={key: value for key, value in os.environ.items() if key != "REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert env_check.returncode != 0
    assert "REDIS_URL is not set" in env_check.stderr

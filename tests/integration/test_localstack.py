"""The embedded stack: reused when up, recovered after a crash, and clear about unreachable URLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from scripts.devstack import localstack
from tests.stack_folders import private_stack_folder


@pytest.fixture(scope="module")
def stack_root() -> Iterator[Path]:
    with private_stack_folder("orderflow-localstack-") as root:
        yield root
        localstack.wipe(root)


def server_pids(root: Path) -> tuple[int, int]:
    postgres = localstack._running_pid(root / "postgres" / "data" / "postmaster.pid", "postgres")
    redis_server = localstack._running_pid(root / "redis" / "redis.pid", "redis-server")
    assert postgres and redis_server
    return postgres, redis_server


def kill_hard(pid: int) -> None:
    process = psutil.Process(pid)
    children = process.children(recursive=True)
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([process, *children], timeout=10)


def test_a_second_start_reuses_the_running_servers(stack_root: Path) -> None:
    first = localstack.ensure_up(stack_root)
    pids = server_pids(stack_root)

    second = localstack.ensure_up(stack_root)

    assert second == first
    assert server_pids(stack_root) == pids


def test_pid_files_left_by_a_crashed_run_are_recovered_without_cleanup(stack_root: Path) -> None:
    before = localstack.ensure_up(stack_root)
    postgres, redis_server = server_pids(stack_root)
    kill_hard(postgres)
    kill_hard(redis_server)
    # The crashed run's pid now belongs to someone else: a live process that is not a server.
    (stack_root / "redis" / "redis.pid").write_text(f"{os.getpid()}\n")

    after = localstack.ensure_up(stack_root)

    assert after.database_url == before.database_url
    localstack.check_reachable(after.database_url, after.redis_url)
    assert server_pids(stack_root) != (postgres, redis_server)


def test_a_stopped_stack_starts_again_with_its_data(stack_root: Path) -> None:
    stack = localstack.ensure_up(stack_root, database="kept")
    localstack.stop(stack_root)

    for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.2), retry=retry_if_exception_type()):
        with attempt:
            assert localstack.ensure_up(stack_root).redis_url == stack.redis_url
    localstack.check_reachable(stack.database_url, stack.redis_url)


def run_orderctl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from scripts.orderctl import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ | env, timeout=60)


@pytest.mark.parametrize(
    ("variable", "url", "shown"),
    [
        ("DATABASE_URL", "postgresql://shop:hunter2@127.0.0.1:1/orders", "postgresql+psycopg://shop:***@127.0.0.1:1"),
        ("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
    ],
)
def test_an_unreachable_url_is_one_line_naming_it_with_the_password_masked(variable: str, url: str, shown: str) -> None:
    result = run_orderctl("up", **{variable: url})

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert shown in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr

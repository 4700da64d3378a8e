"""What a bench run costs: CPU time and peak RSS of process groups, and Postgres commits of the throwaway database."""

from __future__ import annotations

import threading
import time
from subprocess import Popen

import psutil
import psycopg
import redis

from scripts.bench.database import Target


class Meter:
    """CPU time and peak RSS of process groups, sampled every 0.2 s in a thread and on demand.

    Groups: the process trees handed to `watch`, Postgres (the client backends of the throwaway database,
    when they are local processes) and Redis (its INFO cpu). A process that ends between two samples loses
    its last fraction of a sample period, so CPU figures are slight underestimates.
    """

    def __init__(self, admin_conninfo: str, dbname: str, redis_url: str, interval_s: float = 0.2) -> None:
        self._admin = psycopg.connect(admin_conninfo, autocommit=True)
        self._redis = redis.Redis.from_url(redis_url)
        self._dbname, self._interval_s = dbname, interval_s
        self._roots: dict[str, psutil.Process] = {}
        self._backends: dict[int, psutil.Process | None] = {}
        self._cpu: dict[str, dict[int, float]] = {"postgres": {}, "redis": {}}
        self._rss: dict[str, dict[int, int]] = {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-meter", daemon=True)

    def __enter__(self) -> Meter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._admin.close()
        self._redis.close()

    def watch(self, group: str, process: Popen[bytes]) -> None:
        """Measure the tree under process as `group`."""
        with self._lock:
            self._roots[group] = psutil.Process(process.pid)
            self._cpu[group], self._rss[group] = {}, {}

    def snapshot(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of every process seen, by group (ended processes keep their last sample)."""
        self.sample()
        with self._lock:
            return {group: dict(seen) for group, seen in self._cpu.items()}

    def peak_rss_mib(self, group: str, children_only: bool = False) -> float:
        main = self._roots[group].pid
        peaks = [rss for pid, rss in self._rss[group].items() if not (children_only and pid == main)]
        return max(peaks, default=0) / 2**20

    def process_count(self, group: str, children_only: bool = False) -> int:
        main = self._roots[group].pid
        return sum(1 for pid in self._rss[group] if not (children_only and pid == main))

    @property
    def postgres_measured(self) -> bool:
        return any(self._backends.values())

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            for group, root in self._roots.items():
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                self._record(group, tree)
            self._record("postgres", self._postgres_backends())
            info = self._redis.info("cpu")
            self._cpu["redis"][0] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def _record(self, group: str, processes: list[psutil.Process]) -> None:
        for process in processes:
            try:
                with process.oneshot():
                    times, rss = process.cpu_times(), process.memory_info().rss
            except psutil.Error:
                continue
            self._cpu[group][process.pid] = times.user + times.system
            peaks = self._rss.setdefault(group, {})
            peaks[process.pid] = max(peaks.get(process.pid, 0), rss)

    def _postgres_backends(self) -> list[psutil.Process]:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
        found = []
        for (pid,) in self._admin.execute(query, (self._dbname,)).fetchall():
            if pid not in self._backends:
                self._backends[pid] = _local_backend(pid, self._dbname)
            if backend := self._backends[pid]:
                found.append(backend)
        return found


def _local_backend(pid: int, dbname: str) -> psutil.Process | None:
    """The backend as a local process, if it is one (its process title names the database)."""
    try:
        process = psutil.Process(pid)
        return process if dbname in " ".join(process.cmdline()) else None
    except psutil.Error:
        return None


def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a process born in between counts from its start)."""
    return {
        group: sum(seconds - before.get(group, {}).get(pid, 0.0) for pid, seconds in seen.items())
        for group, seen in after.items()
        if seen
    }


def per_order(cpu: dict[str, float], orders: int) -> dict[str, float]:
    return {group: seconds / orders for group, seconds in cpu.items()} | {"total": sum(cpu.values()) / orders}


def quiet_counters(target: Target, timeout_s: float = 30.0) -> dict[str, int]:
    """pg_stat_database of the throwaway database once no client is connected (so every backend has flushed)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(target.libpq("postgres"), autocommit=True) as admin:
        clients = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
        while (row := admin.execute(clients, (target.dbname,)).fetchone()) and row[0]:
            if time.monotonic() > deadline:
                target.note(f"Postgres counters read with {row[0]} clients still connected: commits may be short")
                break
            time.sleep(0.05)
        row = admin.execute(
            "SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database WHERE datname = %s", (target.dbname,)
        ).fetchone()
    # Row updates of the orders table, and how many were HOT (no index touched: no index entry, less bloat); its
    # dead rows and autovacuum runs, and its heap and indexes on disk (the bloat the updates leave).
    with psycopg.connect(target.libpq(), autocommit=True) as database:
        updates = database.execute(
            "SELECT n_tup_upd, n_tup_hot_upd, n_live_tup, n_dead_tup, autovacuum_count, "
            "pg_relation_size('orders'), pg_indexes_size('orders') FROM pg_stat_user_tables WHERE relname = 'orders'"
        ).fetchone()
    assert row is not None and updates is not None
    return {
        "xact_commit": row[0],
        "xact_rollback": row[1],
        "sessions": row[2],
        "orders_updates": updates[0],
        "orders_hot_updates": updates[1],
        "orders_live_rows": updates[2],
        "orders_dead_rows": updates[3],
        "orders_autovacuums": updates[4],
        "orders_heap_bytes": updates[5],
        "orders_index_bytes": updates[6],
    }


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}

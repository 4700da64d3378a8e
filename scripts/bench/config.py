"""What a bench run is asked to do: `BenchConfig`, the one argument of `scripts.bench.run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import get_settings


def in_stack_dir(name: str) -> Path:
    """A bench output under the stack folder (STACK_DIR, by default .localstack in the working directory)."""
    return get_settings().stack_dir / name


@dataclass(frozen=True)
class BenchConfig:
    """What to run; `run(BenchConfig(...))` is the whole benchmark."""

    orders: int = 2000
    processes: int = 2
    threads: int = 8
    repeat: int = 3
    warmup: int = 200
    products: int = 100
    intake_seconds: float = 10.0
    intake_concurrency: int = 16
    intake_rate: float = 200.0
    api_processes: int = 1
    history: int = 0  # with N > 0: the phases again after loading N terminal orders (scripts/bench/growth.py)
    database_url: str | None = None
    redis_url: str | None = None
    json_out: Path = field(default_factory=lambda: in_stack_dir("bench.json"))
    log_dir: Path = field(default_factory=lambda: in_stack_dir("bench-logs"))
    phases: tuple[str, ...] = ("baseline", "orderflow", "intake")

"""What the local provider servers (Stripe, carrier) share: fault settings, seeded draws, stalls, a test thread."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

Draw = TypeVar("Draw")


class KnobSet:
    """Mixin for a frozen dataclass of fault knobs: read from JSON or the environment, written back as JSON."""

    ENV_PREFIX: ClassVar[str]
    INTEGERS: ClassVar[frozenset[str]] = frozenset({"latency_ms", "seed"})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Self | None = None) -> Self:
        """Build from a JSON-ish mapping; unknown keys are an error, missing ones keep `base`'s value."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        updates: dict[str, Any] = {k: int(v) if k in cls.INTEGERS else float(v) for k, v in values.items()}
        return replace(base or cls(), **updates)  # type: ignore[type-var]

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each knob's environment variable: ENV_PREFIX + its upper-case name."""
        return {f.name: f"{cls.ENV_PREFIX}{f.name.upper()}" for f in fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Read the knobs' variables (unset or empty ones keep their defaults)."""
        return cls.from_mapping({name: environ[env] for name, env in cls.env_names().items() if environ.get(env)})

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return asdict(self)  # type: ignore[call-overload,no-any-return]


class SeededDraws:
    """A seeded random stream behind a lock, restarted whenever the settings change."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def restart(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def pick(self, bands: Sequence[tuple[Draw, float]], otherwise: Draw) -> Draw:
        """One draw over consecutive bands of these widths; `otherwise` past them (no draw when all are 0)."""
        if not any(width for _, width in bands):
            return otherwise
        with self._lock:
            r = self._rng.random()
        edge = 0.0
        for outcome, width in bands:
            edge += width
            if r < edge:
                return outcome
        return otherwise


async def stall(request: Request, seconds: float) -> None:
    """Hold the answer back until the client gives up (disconnects) or `seconds` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.02)


class LoopbackServer:
    """A Starlette app on a free loopback port in a background thread, with a JSON client for its /_control API."""

    name: ClassVar[str] = "loopback server"

    def __init__(self, app: Starlette, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
        # without it every keep-alive request pays a ~40 ms Nagle / delayed-ACK stall.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, wait_s: float = 10.0) -> Self:
        """Start serving and wait until the port answers."""
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                raise ValueError(f"{method} {path} -> {error.code}: {error.read().decode()}") from None

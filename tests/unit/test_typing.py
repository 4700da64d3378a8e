"""The code type-checks under mypy --strict (configured in pyproject.toml), so a typing regression fails CI."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_the_code_passes_mypy_strict() -> None:
    packages = [str(ROOT / name) for name in ("api", "models", "pipeline", "workers", "scripts")]
    report, errors, status = api.run(
        [*packages, "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir=/dev/null"]
    )
    assert status == 0, report + errors

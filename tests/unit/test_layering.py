"""Dependencies point one way, and the saga's rules stay free of I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = ["pipeline/errors.py", "pipeline/saga.py", "pipeline/states.py", "models/status.py"]
IO_LIBRARIES = {"sqlalchemy", "stripe", "dramatiq", "redis", "structlog", "psycopg", "httpx", "fastapi"}
# Which of our packages each package may import.
ALLOWED = {
    "models": {"models"},
    "pipeline": {"pipeline", "models"},
    "workers": {"workers", "pipeline", "models"},
    "api": {"api", "workers", "pipeline", "models"},
}
OURS = {"models", "pipeline", "workers", "api", "scripts", "tests"}


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", [m for m in PURE_MODULES if (ROOT / m).exists()])
def test_the_pure_modules_import_no_io_library(module: str) -> None:
    assert imported_top_levels(ROOT / module) & IO_LIBRARIES == set()


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        ours = imported_top_levels(path) & OURS
        assert ours <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {ours - ALLOWED[package]}"

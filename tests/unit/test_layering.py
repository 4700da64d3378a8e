"""Dependencies point one way and the saga's rules stay free of I/O: import-linter's contracts (pyproject.toml),
followed through every import, not one level deep. And no other installed package owns our package names.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"api", "scripts", "workers", "pipeline", "models"}


def test_every_import_linter_contract_is_kept() -> None:
    # The same check `python3 scripts/dev.py lint` runs, in its own process: import-linter configures logging with
    # dictConfig, which would disable every logger this test process already made.
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def top_levels(distribution: metadata.Distribution) -> set[str]:
    """The importable top-level names a distribution installs (its top_level.txt, else its files)."""
    listed = distribution.read_text("top_level.txt")
    if listed is not None:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for file in distribution.files or []:
        parts = Path(str(file)).parts
        if len(parts) > 1 and not parts[0].endswith((".dist-info", ".data")) and parts[0] != "..":
            names.add(parts[0])
        elif len(parts) == 1 and parts[0].endswith(".py"):
            names.add(parts[0].removesuffix(".py"))
    return names


def test_no_other_installed_distribution_owns_our_top_level_package_names() -> None:
    # Names like `api` and `scripts` are common: another wheel shipping one would shadow ours, or ours it.
    owners = {
        distribution.metadata["Name"]: top_levels(distribution) & OUR_PACKAGES
        for distribution in metadata.distributions()
        if (distribution.metadata["Name"] or "").lower() != "orderflow"
    }
    assert {name: clash for name, clash in owners.items() if clash} == {}

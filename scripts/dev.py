#!/usr/bin/env python3
"""Set up orderflow's virtual environment when needed, then run the main job or the tests.

    python3 scripts/dev.py demo    # the whole local stack with demo orders flowing through the saga
    python3 scripts/dev.py serve   # the whole local stack, up until Ctrl-C, with its URLs and tokens
    python3 scripts/dev.py test    # the test suite against real Postgres, Redis and the local Stripe
    python3 scripts/dev.py lint    # ruff, ruff format, mypy on the whole tree, import-linter's contracts

Standard library only: this is what runs on a machine that has nothing but Python.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".orderflow-installed"
COMMANDS = {
    "demo": ["orderctl", "demo"],
    "serve": ["orderctl", "serve"],
    "test": ["python", "-m", "pytest"],
}
BROWSER_PACKAGES = ["chromium", "chromium-driver"]
BROWSER_TOOLS = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
# Each runs in turn from the venv; the first that fails ends the lint with its exit code.
LINTERS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy", "api", "pipeline", "workers", "models", "scripts", "tests"],
    ["lint-imports"],
]


def ensure_venv() -> Path:
    """Create .venv and install the project into it, again only when pyproject.toml changed."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return VENV / "bin"
    if not (VENV / "bin" / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing orderflow and its dependencies into .venv ...", flush=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--editable", f"{ROOT}[dev,local]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)
    return VENV / "bin"


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under whatever python3 the machine has
        sys.exit(f"orderflow needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if len(sys.argv) < 2 or sys.argv[1] not in [*COMMANDS, "lint"]:
        sys.exit(f"usage: python3 scripts/dev.py {{{'|'.join([*COMMANDS, 'lint'])}}} [args...]")
    try:
        bin_dir = ensure_venv()
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: installing the dependencies failed (exit {error.returncode}); see pip's output above")
    os.chdir(ROOT)
    if sys.argv[1] == "test":
        ensure_browser()
    if sys.argv[1] == "lint":
        lint(bin_dir)
    program, *args = COMMANDS[sys.argv[1]]
    # argv[0] must be the full path: Python finds its venv from it.
    executable = str(bin_dir / program)
    os.execv(executable, [executable, *args, *sys.argv[2:]])


def ensure_browser() -> None:
    """The console's browser tests drive Debian's headless Chromium: install it when missing and we can (root
    with apt-get, as on a fresh CI machine); otherwise those tests fail and say how to install it."""
    if all(Path(tool).exists() for tool in BROWSER_TOOLS):
        return
    if os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists():
        print("warning: no /usr/bin/chromium and chromedriver; the browser tests will fail", file=sys.stderr)
        return
    print("installing chromium and chromium-driver (Debian) for the console's browser tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES]):
        subprocess.run(command, check=False, env=env, stdout=subprocess.DEVNULL)


def lint(bin_dir: Path) -> None:
    """Run every linter; exit with the first failure's code, or 0."""
    for program, *args in LINTERS:
        print(f"$ {program} {' '.join(args)}", flush=True)
        code = subprocess.run([str(bin_dir / program), *args], cwd=ROOT).returncode
        if code != 0:
            sys.exit(f"error: {program} failed (exit {code})")
    sys.exit(0)


if __name__ == "__main__":
    main()

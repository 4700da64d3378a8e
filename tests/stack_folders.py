"""Stack folders for tests that start their own embedded servers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.devstack import localstack


@contextmanager
def private_stack_folder(prefix: str) -> Iterator[Path]:
    """A stack folder outside pytest's, stopped and removed afterwards.

    A pytest run beside this one may chmod pytest's base folder back to 0700, and then the unprivileged
    Postgres user (when the tests run as root) can no longer reach its data.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix)) / "stack"
    try:
        yield root
    finally:
        if root.exists():
            localstack.stop(root)
        shutil.rmtree(root.parent, ignore_errors=True)

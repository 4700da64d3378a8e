"""The local stack's signing secret: API processes starting at once all read the same, whole secret."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from api import auth


def test_a_process_starting_while_another_writes_the_secret_never_reads_it_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first writer is slow to produce its secret; a second one starts meanwhile, as two API processes do.
    slow, real = threading.Event(), secrets.token_urlsafe

    def slow_token(length: int) -> str:
        if threading.current_thread().name == "first":
            slow.set()
            time.sleep(0.5)
        return real(length)

    monkeypatch.setattr(secrets, "token_urlsafe", slow_token)
    found: dict[str, str] = {}
    first = threading.Thread(target=lambda: found.update(first=auth.local_secret(tmp_path)), name="first")
    first.start()
    assert slow.wait(5)
    found["second"] = auth.local_secret(tmp_path)
    first.join()

    assert found["first"] == found["second"] and len(found["second"]) >= 32
    assert [path.name for path in tmp_path.iterdir()] == [auth.LOCAL_SECRET_FILE], "no draft left behind"

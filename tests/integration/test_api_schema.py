"""The served OpenAPI document says what the API does: schemathesis fuzzes every operation over real HTTP.

The API runs in this process on a loopback port against the test Postgres and Redis; the schemathesis CLI runs
as a client process with a valid admin token, generating valid and invalid requests from /openapi.json, and
fails on any 5xx, any undocumented status code or content type, any body that breaks its documented schema,
and any invalid request the API accepts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from api.app import create_app
from scripts.devstack.loopback import LoopbackServer
from tests.api_helpers import api_settings, token
from tests.conftest import Servers

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
EXAMPLES_PER_OPERATION = 40
SEED = 20261201  # the same cases every run: a failure here is reproducible with this seed


@pytest.fixture
def served_api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[str]:
    settings = api_settings(
        db_url,
        servers.redis_url,
        rate_limit_per_s=100_000,
        rate_limit_burst=100_000,
        stripe_webhook_secret=SecretStr("whsec_schema_test"),
    )
    with LoopbackServer(create_app(settings, enqueue=lambda order_id: None)) as server:
        yield server.url


def test_every_operation_conforms_to_the_served_schema(served_api: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{served_api}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {token('admin', client='schema-test')}",
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--no-color",
    ]

    # In tmp_path: schemathesis keeps its case database and reports in its working folder.
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)

    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]

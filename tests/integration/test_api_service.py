"""Health, readiness, metrics, request ids, the OpenAPI document, and errors nobody planned for."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from pipeline.config import PROJECT_ROOT
from scripts.localstack import free_port
from tests.api_helpers import api_client, api_settings, assert_error, auth, new_key, order_body
from tests.conftest import Servers
from tests.factories import make_product


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url) as client:
        yield client


def test_healthz_answers_while_the_process_runs(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_and_redis_answer(api: TestClient) -> None:
    response = api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_readyz_is_503_naming_redis_when_redis_is_down(servers: Servers, db_url: str) -> None:
    with api_client(db_url, f"redis://127.0.0.1:{free_port()}/0") as api:
        body = assert_error(api.get("/readyz"), 503, "NOT_READY")

    assert body["details"]["postgres"] == "ok"
    assert body["details"]["redis"].startswith("unreachable")


def test_readyz_is_503_naming_postgres_when_postgres_is_down(servers: Servers, db_url: str) -> None:
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)

    with api_client(down, servers.redis_url) as api:
        body = assert_error(api.get("/readyz"), 503, "NOT_READY")

    assert body["details"]["postgres"].startswith("unreachable") and body["details"]["redis"] == "ok"


def test_a_request_with_postgres_down_is_503_service_unavailable(servers: Servers, db_url: str) -> None:
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)

    with api_client(down, servers.redis_url) as api:
        response = api.get("/v1/orders", headers=auth())

    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"


def test_an_order_posted_with_postgres_down_is_503_service_unavailable(servers: Servers, db_url: str) -> None:
    # Intake writes through its own async pool, which waits a few seconds for a connection before giving up.
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)
    body = order_body((uuid.uuid4(), 1, 1250))

    with api_client(down, servers.redis_url) as api:
        response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))

    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"


def test_a_request_id_is_echoed_when_sent_and_generated_when_not(api: TestClient) -> None:
    sent = api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    forged = [api.get("/healthz", headers={"X-Request-ID": bad}) for bad in ("a b", "{json}", "x" * 129)]
    generated = [api.get("/v1/nothing").headers["X-Request-ID"] for _ in range(2)]

    assert sent.headers["X-Request-ID"] == "abc-123"
    assert all(len(response.headers["X-Request-ID"]) == 32 for response in forged)
    assert len(generated[0]) == 32 and generated[0] != generated[1]


def test_the_request_id_is_bound_in_the_log_context_of_the_handler(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    app = create_app(api_settings(db_url, servers.redis_url))

    @app.get("/context")
    def context() -> dict[str, object]:
        return structlog.contextvars.get_contextvars()

    with TestClient(app) as client:
        seen = client.get("/context", headers={"X-Request-ID": "req-42"}).json()

    assert seen == {"request_id": "req-42"}
    assert structlog.contextvars.get_contextvars() == {}


def test_an_unexpected_exception_is_500_internal_error_without_a_traceback(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    app = create_app(api_settings(db_url, servers.redis_url))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/app.py line 3")

    with TestClient(app) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-500"})

    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert set(body) == {"code", "message"}
    assert response.headers["X-Request-ID"] == "req-500"


def test_metrics_count_requests_by_route_template_and_orders_accepted(api: TestClient, db_url: str) -> None:
    product = make_product(db_url)
    api.post("/v1/orders", json=order_body((product, 1, 1250)), headers=auth(key=new_key()))
    api.get("/v1/orders/00000000-0000-0000-0000-000000000000", headers=auth())

    text = api.get("/metrics").text

    assert 'orderflow_http_requests_total{method="POST",route="/v1/orders",status="201"} 1.0' in text
    assert 'route="/v1/orders/{order_id}",status="404"} 1.0' in text
    assert "orderflow_http_request_duration_seconds_bucket" in text
    assert "orderflow_orders_accepted_total 1.0" in text


def test_unmatched_paths_share_one_metrics_label(api: TestClient) -> None:
    for path in ("/a", "/b", "/c"):
        api.get(path)

    text = api.get("/metrics").text

    assert 'orderflow_http_requests_total{method="GET",route="<unmatched>",status="404"} 3.0' in text


def test_the_openapi_document_describes_the_v1_routes_and_bearer_auth(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()

    assert set(spec["paths"]) == {
        "/v1/orders", "/v1/orders/{order_id}", "/v1/orders/{order_id}/cancel", "/v1/products",
        "/v1/products/{product_id}", "/v1/products/{product_id}/stock", "/v1/webhooks/stripe", "/healthz", "/readyz",
    }  # fmt: skip
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    price = spec["components"]["schemas"]["OrderItemCreate"]["properties"]["price"]
    assert price["type"] == "integer" and "cents" in price["description"]


MULTIPROCESS_PROBE = """
import os, sys
from fastapi.testclient import TestClient
from tests.api_helpers import api_settings
from api.app import create_app
from pipeline.config import PROJECT_ROOT
app = create_app(api_settings(sys.argv[1], sys.argv[2]))
with TestClient(app) as client:
    client.get("/healthz")
    sys.stdout.write(client.get("/metrics").text)
"""


def test_with_prometheus_multiproc_dir_set_metrics_are_aggregated_from_the_multiprocess_files(
    servers: Servers, db_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    command = [sys.executable, "-c", MULTIPROCESS_PROBE, db_url, servers.redis_url]

    text = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT).stdout

    assert 'orderflow_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert any(tmp_path.iterdir())

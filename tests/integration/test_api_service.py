"""Health, readiness, metrics, request ids, the OpenAPI document, and errors nobody planned for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import structlog
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from scripts.devstack.localstack import free_port
from scripts.devstack.processes import SOURCE_ROOT as PROJECT_ROOT
from tests.api_helpers import api_client, api_settings, assert_error, auth, new_key, order_body
from tests.conftest import Servers
from tests.factories import make_product


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis, metrics_port: int) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, api_metrics_port=metrics_port) as client:
        yield client


def scrape(port: int) -> str:
    """What Prometheus reads from the API's metrics port."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def test_healthz_answers_while_the_process_runs(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_and_redis_answer(api: TestClient) -> None:
    response = api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_readyz_stays_200_and_reports_redis_unreachable_when_redis_is_down(servers: Servers, db_url: str) -> None:
    # Intake needs only Postgres (the lease brings an order to its saga), so a Redis outage keeps the pod in service.
    with api_client(db_url, f"redis://127.0.0.1:{free_port()}/0") as api:
        response = api.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")


def test_readyz_is_503_naming_postgres_when_postgres_is_down(servers: Servers, db_url: str) -> None:
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)

    with api_client(down, servers.redis_url) as api:
        body = assert_error(api.get("/readyz"), 503, "NOT_READY")

    assert body["details"]["postgres"].startswith("unreachable") and body["details"]["redis"] == "ok"


def test_a_request_with_postgres_down_is_503_with_retry_after(servers: Servers, db_url: str) -> None:
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)

    with api_client(down, servers.redis_url, intake_db_budget_s=1.0) as api:
        on_a_thread = api.get("/v1/products", headers=auth())  # a SQLAlchemy route
        on_the_loop = api.get("/v1/orders", headers=auth())  # the async pool, within its budget

    assert_error(on_a_thread, 503, "SERVICE_UNAVAILABLE")
    assert_error(on_the_loop, 503, "NOT_READY")
    assert on_a_thread.headers["Retry-After"] == on_the_loop.headers["Retry-After"] == "1"


def test_an_order_posted_with_postgres_down_is_503_not_ready_within_the_intake_budget(
    servers: Servers, db_url: str
) -> None:
    # Intake writes through its own async pool, which waits INTAKE_DB_BUDGET_S for a connection before giving up.
    down = make_url(db_url).set(port=free_port()).render_as_string(hide_password=False)
    body = order_body((uuid.uuid4(), 1, 1250))

    with api_client(down, servers.redis_url, intake_db_budget_s=1.0) as api:
        started = time.monotonic()
        response = api.post("/v1/orders", json=body, headers=auth(key=new_key()))
        elapsed = time.monotonic() - started

    assert_error(response, 503, "NOT_READY")
    assert response.headers["Retry-After"] == "1"
    assert elapsed < 2.0, f"answered after {elapsed:.1f} s"


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


def test_metrics_count_requests_by_route_template_and_orders_accepted(
    api: TestClient, db_url: str, metrics_port: int
) -> None:
    product = make_product(db_url)
    api.post("/v1/orders", json=order_body((product, 1, 1250)), headers=auth(key=new_key()))
    api.get("/v1/orders/00000000-0000-0000-0000-000000000000", headers=auth())

    text = scrape(metrics_port)

    assert 'orderflow_http_requests_total{method="POST",route="/v1/orders",status="201"} 1.0' in text
    assert 'route="/v1/orders/{order_id}",status="404"} 1.0' in text
    assert "orderflow_http_request_duration_seconds_bucket" in text
    assert "orderflow_orders_accepted_total 1.0" in text


def test_unmatched_paths_share_one_metrics_label(api: TestClient, metrics_port: int) -> None:
    for path in ("/a", "/b", "/c"):
        api.get(path)

    text = scrape(metrics_port)

    assert 'orderflow_http_requests_total{method="GET",route="<unmatched>",status="404"} 3.0' in text


def test_the_openapi_document_describes_the_v1_routes_and_bearer_auth(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()

    assert set(spec["paths"]) == {
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/cancel",
        "/v1/products",
        "/v1/products/{product_id}",
        "/v1/products/{product_id}/stock",
        "/v1/events",
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{endpoint_id}",
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "/healthz",
        "/readyz",
    }
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    operations = {op["operationId"]: set(op["responses"]) for path in spec["paths"].values() for op in path.values()}
    assert set(operations) == {
        "createOrder",
        "listOrders",
        "getOrder",
        "cancelOrder",
        "listProducts",
        "createProduct",
        "getProduct",
        "setProductStock",
        "listEvents",
        "createWebhookEndpoint",
        "listWebhookEndpoints",
        "getWebhookEndpoint",
        "updateWebhookEndpoint",
        "deleteWebhookEndpoint",
        "rotateWebhookSecret",
        "listWebhookDeliveries",
        "liveness",
        "readiness",
    }, "client generators name their methods after these"
    assert operations["createOrder"] >= {"201", "200", "400", "401", "403", "409", "413", "422", "429", "503"}
    price = spec["components"]["schemas"]["OrderItemCreate"]["properties"]["price"]
    assert price["type"] == "integer" and "cents" in price["description"]


def test_metrics_are_not_served_on_the_public_api_port(api: TestClient, metrics_port: int) -> None:
    assert_error(api.get("/metrics"), 404, "NOT_FOUND")
    assert "/metrics" not in api.get("/openapi.json").json()["paths"]
    assert "orderflow_http_requests_total" in scrape(metrics_port)


def test_the_metrics_port_listens_on_loopback_by_default(servers: Servers, db_url: str, metrics_port: int) -> None:
    with api_client(db_url, servers.redis_url, api_metrics_port=metrics_port):
        listening = {c.laddr for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
    assert (("127.0.0.1", metrics_port)) in {(address.ip, address.port) for address in listening}
    assert not any(address.port == metrics_port and address.ip != "127.0.0.1" for address in listening)


MULTIPROCESS_PROBE = """
import os, sys
from fastapi.testclient import TestClient
import httpx
from tests.api_helpers import api_settings
from api.app import create_app
app = create_app(api_settings(sys.argv[1], sys.argv[2], api_metrics_port=int(sys.argv[3])))
with TestClient(app) as client:
    client.get("/healthz")
    sys.stdout.write(httpx.get(f"http://127.0.0.1:{sys.argv[3]}/metrics").text)
"""


def test_with_prometheus_multiproc_dir_set_metrics_are_aggregated_from_the_multiprocess_files(
    servers: Servers, db_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    command = [sys.executable, "-c", MULTIPROCESS_PROBE, db_url, servers.redis_url, str(free_port())]

    text = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT).stdout

    assert 'orderflow_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert any(tmp_path.iterdir())

"""Bearer JWT auth, scopes, key rotation, and the per-client rate limit."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.auth import local_secret, mint_token
from scripts.devstack.localstack import free_port
from tests.api_helpers import (
    OLD_SECRET,
    SECRET,
    api_client,
    api_settings,
    assert_error,
    auth,
    new_key,
    order_body,
    row_counts,
    token,
)
from tests.conftest import Servers
from tests.factories import make_product

PROTECTED = [
    ("GET", "/v1/orders"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders/00000000-0000-0000-0000-000000000000"),
    ("POST", "/v1/orders/00000000-0000-0000-0000-000000000000/cancel"),
    ("GET", "/v1/products"),
    ("POST", "/v1/products"),
    ("PUT", "/v1/products/00000000-0000-0000-0000-000000000000/stock"),
]


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url) as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize("method, path", PROTECTED)
def test_every_v1_route_is_401_without_a_token_and_writes_nothing(
    api: TestClient, db_url: str, method: str, path: str
) -> None:
    product = make_product(db_url)
    before = row_counts(db_url)
    body = (
        order_body((product, 1, 1250))
        if path == "/v1/orders"
        else {"sku": "x", "name": "x", "price": 1, "available": 1}
    )

    response = api.request(method, path, json=body, headers={"Idempotency-Key": new_key()})

    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert row_counts(db_url) == before


@pytest.mark.parametrize(
    "headers",
    [
        bearer("not-a-jwt"),
        bearer(mint_token(secrets.token_urlsafe(32), "shop-1", ["orders:read"])),
        bearer(token("orders:read", ttl=-60)),
        bearer(jwt.encode({"sub": "shop-1", "scopes": ["orders:read"]}, SECRET, algorithm="HS256")),
        bearer(jwt.encode({"sub": "s" * 65, "scopes": [], "exp": time.time() + 60}, SECRET, algorithm="HS256")),
        bearer(jwt.encode({"sub": "shop-1", "scopes": "admin", "exp": time.time() + 60}, SECRET, algorithm="HS256")),
        {"Authorization": f"Basic {token('orders:read')}"},
    ],
    ids=["garbage", "unknown key", "expired", "no exp", "subject too long", "scopes not a list", "not bearer"],
)
def test_a_bad_token_is_401(api: TestClient, headers: dict[str, str]) -> None:
    assert_error(api.get("/v1/orders", headers=headers), 401, "UNAUTHORIZED")


def test_an_expired_token_says_so(api: TestClient) -> None:
    body = assert_error(api.get("/v1/orders", headers=bearer(token(ttl=-60))), 401, "UNAUTHORIZED")

    assert "expired" in body["message"]


def test_a_token_unsigned_or_signed_with_another_algorithm_is_401(api: TestClient) -> None:
    claims = {"sub": "shop-1", "scopes": ["admin"], "exp": time.time() + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    hs512 = jwt.encode(claims, SECRET + SECRET, algorithm="HS512")

    assert_error(api.get("/v1/orders", headers=bearer(unsigned)), 401, "UNAUTHORIZED")
    assert_error(api.get("/v1/orders", headers=bearer(hs512)), 401, "UNAUTHORIZED")


def test_a_token_signed_with_the_previous_key_is_still_accepted_during_rotation(api: TestClient) -> None:
    response = api.get("/v1/orders", headers=bearer(token("orders:read", secret=OLD_SECRET)))

    assert response.status_code == 200


def test_a_token_without_the_scope_is_403_naming_the_scope_and_writes_nothing(api: TestClient, db_url: str) -> None:
    body, before = order_body((make_product(db_url), 1, 1250)), row_counts(db_url)
    reader = bearer(token("orders:read")) | {"Idempotency-Key": new_key()}

    error = assert_error(api.post("/v1/orders", json=body, headers=reader), 403, "FORBIDDEN")

    assert error["details"] == {"requiredScope": "orders:write"}
    assert row_counts(db_url) == before
    assert_error(api.get("/v1/orders", headers=bearer(token("orders:write"))), 403, "FORBIDDEN")
    assert_error(api.post("/v1/products", json={}, headers=auth()), 403, "FORBIDDEN")


def test_a_token_accepted_before_is_refused_once_it_expires(api: TestClient) -> None:
    # Given a token valid for two more seconds, accepted once (verified tokens are remembered per process)
    short = mint_token(SECRET, "shop-1", ["orders:read"], ttl_s=2)
    assert api.get("/v1/orders", headers=bearer(short)).status_code == 200

    # When it is used again after its expiry
    time.sleep(max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
    response = api.get("/v1/orders", headers=bearer(short))

    # Then it is refused as expired
    body = assert_error(response, 401, "UNAUTHORIZED")
    assert "expired" in body["message"]


def test_the_admin_scope_grants_every_scope(api: TestClient) -> None:
    assert api.get("/v1/orders", headers=bearer(token("admin"))).status_code == 200


def test_a_client_over_its_burst_is_429_with_retry_after_and_others_are_not(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    body = order_body((make_product(db_url), 1, 1250))
    with api_client(db_url, servers.redis_url, rate_limit_per_s=0.5, rate_limit_burst=3) as api:
        statuses = [api.get("/v1/orders", headers=auth(client="greedy")).status_code for _ in range(3)]
        before = row_counts(db_url)
        limited = api.post("/v1/orders", json=body, headers=auth(client="greedy", key=new_key()))
        other = api.get("/v1/orders", headers=auth(client="polite"))

    assert statuses == [200, 200, 200]
    assert row_counts(db_url) == before
    assert_error(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert other.status_code == 200


def test_the_bucket_refills_with_time(servers: Servers, db_url: str, redis_client: redis.Redis) -> None:
    with api_client(db_url, servers.redis_url, rate_limit_per_s=2, rate_limit_burst=1) as api:
        first, second = (api.get("/v1/orders", headers=auth()).status_code for _ in range(2))
        time.sleep(0.6)
        third = api.get("/v1/orders", headers=auth()).status_code

    assert (first, second, third) == (200, 429, 200)


def test_with_redis_unreachable_the_rate_limit_lets_requests_through(servers: Servers, db_url: str) -> None:
    with api_client(db_url, f"redis://127.0.0.1:{free_port()}/0", rate_limit_per_s=0.1, rate_limit_burst=1) as api:
        statuses = [api.get("/v1/orders", headers=auth()).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def test_the_rate_limit_is_shared_by_every_app_on_the_same_redis(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    with (
        api_client(db_url, servers.redis_url, rate_limit_per_s=0.1, rate_limit_burst=2) as one,
        api_client(db_url, servers.redis_url, rate_limit_per_s=0.1, rate_limit_burst=2) as two,
    ):
        statuses = [app.get("/v1/orders", headers=auth()).status_code for app in (one, two, one)]

    assert statuses == [200, 200, 429]


def test_with_no_configured_secret_the_app_uses_a_local_secret_created_once_with_mode_600(
    servers: Servers, db_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stack_dir = tmp_path / "stack"
    secret = local_secret(stack_dir)

    with api_client(db_url, servers.redis_url, jwt_secrets=[], stack_dir=stack_dir) as api:
        response = api.get("/v1/orders", headers=bearer(mint_token(secret, "shop-1", ["orders:read"])))

    assert response.status_code == 200
    assert local_secret(stack_dir) == secret
    assert (stack_dir / "jwt-secret").stat().st_mode & 0o777 == 0o600


def test_a_configured_secret_shorter_than_32_bytes_is_refused_at_start(servers: Servers) -> None:
    settings = api_settings(servers.database_url, servers.redis_url, jwt_secrets=[SecretStr("changeme")])

    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        create_app(settings)


def test_orderctl_token_mints_a_token_the_api_accepts_signed_with_the_first_secret(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    orderctl = Path(sys.executable).parent / "orderctl"
    env = {**os.environ, "JWT_SECRETS": json.dumps([SECRET, OLD_SECRET])}
    command = [str(orderctl), "token", "--client", "shop-9", "--scope", "orders:read", "--ttl", "60"]

    minted = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()

    claims = jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "shop-9" and claims["scopes"] == ["orders:read"]
    assert 55 <= claims["exp"] - time.time() <= 60
    with api_client(db_url, servers.redis_url) as api:
        assert api.get("/v1/orders", headers=bearer(minted)).status_code == 200


def test_orderctl_token_refuses_an_unknown_scope(servers: Servers) -> None:
    orderctl = Path(sys.executable).parent / "orderctl"
    env = {**os.environ, "JWT_SECRETS": json.dumps([SECRET])}

    result = subprocess.run([str(orderctl), "token", "--client", "x", "--scope", "root"], env=env, capture_output=True)

    assert result.returncode == 1 and b"unknown scopes" in result.stderr


# ---- audience and issuer ----------------------------------------------------------------------------------

AUDIENCE, ISSUER = "orderflow-api", "https://auth.example.com"


def named_token(audience: str | None = AUDIENCE, issuer: str | None = ISSUER) -> dict[str, str]:
    return bearer(mint_token(SECRET, "shop-1", ["orders:read"], 600, audience=audience, issuer=issuer))


def test_with_an_audience_and_issuer_configured_only_a_token_naming_both_is_accepted(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    with api_client(db_url, servers.redis_url, jwt_audience=AUDIENCE, jwt_issuer=ISSUER) as api:
        plain = api.get("/v1/orders", headers=bearer(token("orders:read")))
        no_issuer = api.get("/v1/orders", headers=named_token(issuer=None))
        other_audience = api.get("/v1/orders", headers=named_token(audience="billing-api"))
        other_issuer = api.get("/v1/orders", headers=named_token(issuer="https://evil.example.com"))
        right = api.get("/v1/orders", headers=named_token())

    assert "audience (aud) must be 'orderflow-api'" in assert_error(plain, 401, "UNAUTHORIZED")["message"]
    assert "issuer (iss) must be" in assert_error(no_issuer, 401, "UNAUTHORIZED")["message"]
    assert "audience (aud)" in assert_error(other_audience, 401, "UNAUTHORIZED")["message"]
    assert "issuer (iss)" in assert_error(other_issuer, 401, "UNAUTHORIZED")["message"]
    assert right.status_code == 200


def test_with_no_audience_or_issuer_configured_a_token_naming_them_is_still_accepted(api: TestClient) -> None:
    assert api.get("/v1/orders", headers=named_token()).status_code == 200


def test_orderctl_token_carries_the_configured_audience_and_issuer(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    env = {**os.environ, "JWT_SECRETS": json.dumps([SECRET]), "JWT_AUDIENCE": AUDIENCE, "JWT_ISSUER": ISSUER}
    command = [str(Path(sys.executable).parent / "orderctl"), "token", "--client", "shop-9", "--scope", "orders:read"]

    minted = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()

    with api_client(db_url, servers.redis_url, jwt_audience=AUDIENCE, jwt_issuer=ISSUER) as api:
        assert api.get("/v1/orders", headers=bearer(minted)).status_code == 200


def test_orderctl_token_without_a_scope_exits_1_with_one_line_and_no_token(servers: Servers) -> None:
    orderctl = Path(sys.executable).parent / "orderctl"
    env = {**os.environ, "JWT_SECRETS": json.dumps([SECRET])}

    result = subprocess.run([str(orderctl), "token", "--client", "x"], env=env, capture_output=True, text=True)

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: a token needs at least one --scope (admin, console:read, orders:read, orders:write)"
    ]


# ---- failed authentication, limited per source address ----------------------------------------------------

NEVER_REFILLS = 1e-6  # failures per minute: no token comes back during a test


class RecordingLog:
    """Stands in for a module's structlog logger and keeps the warnings it was sent."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append((event, fields))


def sample(api: TestClient, name: str, **labels: str) -> float:
    return api.app.state.metrics.registry.get_sample_value(name, labels) or 0.0  # type: ignore[attr-defined]


def test_an_address_that_failed_too_often_is_429_even_with_a_valid_token_and_other_addresses_are_not(
    servers: Servers, db_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RecordingLog()
    monkeypatch.setattr("api.deps.log", log)
    limits: dict[str, Any] = {"auth_failures_per_min": NEVER_REFILLS, "auth_failures_burst": 3}
    guessed = bearer(mint_token(secrets.token_urlsafe(32), "shop-1", ["orders:read"]))
    with (
        api_client(db_url, servers.redis_url, address="203.0.113.66", **limits) as attacker,
        api_client(db_url, servers.redis_url, address="198.51.100.7", **limits) as neighbour,
    ):
        # Given an address whose first three tries fail: no token, a garbage one, one signed with a guessed key
        failures = [attacker.get("/v1/orders", headers=h).status_code for h in ({}, bearer("x"), guessed)]

        # When it then offers a guess, and even a valid token
        guess = attacker.get("/v1/orders", headers=guessed)
        valid = attacker.get("/v1/orders", headers=auth())

        # Then both are refused before the token is read, while another address fails and succeeds as usual
        neighbour_statuses = [neighbour.get("/v1/orders", headers=h).status_code for h in (guessed, auth())]
        throttled = sample(attacker, "orderflow_auth_throttled_total")
        by_reason = {r: sample(attacker, "orderflow_auth_failures_total", reason=r) for r in ("missing", "signature")}

    assert failures == [401, 401, 401]
    for refused in (guess, valid):
        body = assert_error(refused, 429, "RATE_LIMITED")
        assert "failed authentications from this address" in body["message"]
        assert int(refused.headers["Retry-After"]) >= 60
    assert neighbour_statuses == [401, 200]
    assert throttled == 2 and by_reason == {"missing": 1, "signature": 1}
    assert log.warnings == [
        (
            "auth_failures_throttled",
            {"address": "203.0.113.66", "reason": "signature", "per_min": NEVER_REFILLS, "burst": 3},
        )
    ]


def test_successful_authentications_spend_nothing_from_the_address_budget(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    with api_client(db_url, servers.redis_url, auth_failures_per_min=NEVER_REFILLS, auth_failures_burst=2) as api:
        first_failure = api.get("/v1/orders", headers=bearer("x")).status_code
        successes = [api.get("/v1/orders", headers=auth()).status_code for _ in range(10)]
        second_failure = api.get("/v1/orders", headers=bearer("x")).status_code
        then = api.get("/v1/orders", headers=auth()).status_code

    assert (first_failure, successes, second_failure, then) == (401, [200] * 10, 401, 429)


def test_a_throttled_address_is_let_in_again_once_its_budget_refills_by_retry_after(
    servers: Servers, db_url: str, redis_client: redis.Redis
) -> None:
    with api_client(db_url, servers.redis_url, auth_failures_per_min=60, auth_failures_burst=1) as api:
        failed = api.get("/v1/orders", headers=bearer("x")).status_code
        throttled = api.get("/v1/orders", headers=auth())
        # Retry-After rounds the wait for one token up, so after it the bucket holds one for sure
        time.sleep(int(throttled.headers["Retry-After"]) + 0.05)
        again = api.get("/v1/orders", headers=auth()).status_code

    assert (failed, throttled.status_code, again) == (401, 429, 200)


def test_with_redis_unreachable_failed_authentications_are_not_limited(servers: Servers, db_url: str) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with api_client(db_url, unreachable, auth_failures_per_min=NEVER_REFILLS, auth_failures_burst=1) as api:
        statuses = [api.get("/v1/orders", headers=h).status_code for h in (bearer("x"), bearer("x"), auth())]

    assert statuses == [401, 401, 200]

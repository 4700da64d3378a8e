"""/v1/webhook-endpoints over the real app: register, read, change, rotate, delete; bad URLs refused; owners apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api_helpers import api_client, assert_error, auth
from tests.conftest import Servers

PATH = "/v1/webhook-endpoints"
PUBLIC_URL = "https://93.184.215.14/hooks/orderflow"  # a public address literal: no DNS needed, never called here


@pytest.fixture
def api(servers: Servers, db_url: str) -> Iterator[TestClient]:
    """The API as production configures it: https only, no address allow-listed."""
    with api_client(db_url, servers.redis_url) as client:
        yield client


def create(api: TestClient, client: str = "shop-1", **body: object) -> dict[str, object]:
    response = api.post(PATH, json={"url": PUBLIC_URL, **body}, headers=auth(client=client))
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def test_creating_an_endpoint_shows_its_secret_once_and_reading_it_never_does(api: TestClient) -> None:
    created = create(api, eventTypes=["order.shipped", "order.cancelled"])

    assert str(created["secret"]).startswith("whsec_")
    assert created["eventTypes"] == ["order.shipped", "order.cancelled"] and created["enabled"] is True
    one = api.get(f"{PATH}/{created['id']}", headers=auth("orders:read"))
    listed = api.get(PATH, headers=auth("orders:read"))
    assert one.status_code == 200 and "secret" not in one.json()
    assert [item["id"] for item in listed.json()["data"]] == [created["id"]]
    assert "secret" not in listed.json()["data"][0]


def test_the_list_pages_newest_first_by_keyset(api: TestClient) -> None:
    ids = [create(api)["id"] for _ in range(3)]

    first = api.get(PATH, params={"limit": 2}, headers=auth()).json()
    second = api.get(PATH, params={"limit": 2, "cursor": first["nextCursor"]}, headers=auth()).json()

    assert [item["id"] for item in first["data"] + second["data"]] == ids[::-1]
    assert second["nextCursor"] is None


def test_patch_changes_the_url_and_types_and_disabling_then_enabling_clears_the_flag(api: TestClient) -> None:
    endpoint = create(api)
    url = f"{PATH}/{endpoint['id']}"

    changed = api.patch(url, json={"url": "https://93.184.215.15/v2", "eventTypes": ["order.paid"]}, headers=auth())
    disabled = api.patch(url, json={"enabled": False}, headers=auth())
    enabled = api.patch(url, json={"enabled": True}, headers=auth())

    assert changed.status_code == 200, changed.text
    assert (changed.json()["url"], changed.json()["eventTypes"]) == ("https://93.184.215.15/v2", ["order.paid"])
    assert (disabled.json()["enabled"], disabled.json()["disabledReason"]) == (False, "disabled by the client")
    assert (enabled.json()["enabled"], enabled.json()["disabledReason"]) == (True, None)


def test_rotating_the_secret_shows_a_new_one_and_delete_removes_the_endpoint(api: TestClient) -> None:
    endpoint = create(api)
    url = f"{PATH}/{endpoint['id']}"

    rotated = api.post(f"{url}/rotate-secret", headers=auth())
    deleted = api.delete(url, headers=auth())

    assert rotated.status_code == 200 and rotated.json()["secret"] not in ("", endpoint["secret"])
    assert str(rotated.json()["secret"]).startswith("whsec_")
    assert deleted.status_code == 204
    assert_error(api.get(url, headers=auth()), 404, "WEBHOOK_ENDPOINT_NOT_FOUND")


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hooks",  # plain http
        "https://127.0.0.1/hooks",  # loopback
        "https://localhost:8443/hooks",
        "https://10.0.0.7/hooks",  # private
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[fd00:ec2::254]/",
        "https://user:pass@93.184.215.14/",  # credentials in the URL
        "ftp://93.184.215.14/",
    ],
)
def test_a_url_we_would_not_call_is_refused_with_a_clear_422(api: TestClient, url: str) -> None:
    body = assert_error(api.post(PATH, json={"url": url}, headers=auth()), 422, "INVALID_WEBHOOK_URL")

    assert body["details"] == {"url": url}
    assert api.get(PATH, headers=auth()).json()["data"] == []


def test_changing_the_url_to_a_private_address_is_refused_too(api: TestClient) -> None:
    endpoint = create(api)

    response = api.patch(f"{PATH}/{endpoint['id']}", json={"url": "https://192.168.1.10/"}, headers=auth())

    assert_error(response, 422, "INVALID_WEBHOOK_URL")


def test_an_unknown_event_type_is_a_validation_error(api: TestClient) -> None:
    response = api.post(PATH, json={"url": PUBLIC_URL, "eventTypes": ["order.teleported"]}, headers=auth())

    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert body["details"][0]["loc"][:2] == ["body", "eventTypes"]


def test_the_local_stack_settings_allow_loopback_over_http(servers: Servers, db_url: str) -> None:
    allowed: dict[str, Any] = {"webhook_allow_http": True, "webhook_allowed_hosts": ["127.0.0.1", "localhost"]}
    with api_client(db_url, servers.redis_url, **allowed) as api:
        response = api.post(PATH, json={"url": "http://127.0.0.1:9/hook"}, headers=auth())

    assert response.status_code == 201, response.text


def test_another_clients_endpoint_is_not_found_and_not_listed_but_admin_sees_it(api: TestClient) -> None:
    theirs = create(api, client="shop-b")
    url = f"{PATH}/{theirs['id']}"

    for response in (
        api.get(url, headers=auth(client="shop-a")),
        api.patch(url, json={"enabled": False}, headers=auth(client="shop-a")),
        api.post(f"{url}/rotate-secret", headers=auth(client="shop-a")),
        api.delete(url, headers=auth(client="shop-a")),
        api.get(f"{url}/deliveries", headers=auth(client="shop-a")),
        api.get(f"{PATH}/{uuid.uuid4()}", headers=auth(client="shop-a")),
    ):
        assert_error(response, 404, "WEBHOOK_ENDPOINT_NOT_FOUND")
    assert api.get(PATH, headers=auth(client="shop-a")).json()["data"] == []
    assert api.get(url, headers=auth(client="shop-b")).json()["enabled"] is True
    assert [item["id"] for item in api.get(PATH, headers=auth("admin", client="ops")).json()["data"]] == [theirs["id"]]


def test_writing_needs_the_write_scope_and_reading_the_read_scope(api: TestClient) -> None:
    endpoint = create(api)

    assert_error(api.post(PATH, json={"url": PUBLIC_URL}, headers=auth("orders:read")), 403, "FORBIDDEN")
    assert_error(api.delete(f"{PATH}/{endpoint['id']}", headers=auth("orders:read")), 403, "FORBIDDEN")
    assert_error(api.get(PATH, headers=auth("orders:write")), 403, "FORBIDDEN")

"""Bad requests to the image routes: the right status, a JSON body that says what was wrong,
and no change to any image (bad input is rejected before any state changes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.errors import error_of
from tests.servers import ADMIN_HEADERS, ServerProcess

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
OTHER_PROJECT = {"X-Project-Id": "bad-input-other", "X-User-Id": "u2", "X-Roles": "member"}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=30) as c:
        yield c


@pytest.fixture
def image(client: httpx.Client) -> Iterator[dict[str, Any]]:
    """A fresh public image with a custom property and a tag, removed afterwards."""
    r = client.post("/v2/images", json={
        "name": f"bad-input-{uuid.uuid4().hex[:8]}", "disk_format": "qcow2",
        "container_format": "bare", "visibility": "public", "foo": "bar", "tags": ["t1"],
    })
    assert r.status_code == 201, r.text
    yield r.json()
    patch(client, r.json()["id"], [{"op": "replace", "path": "/protected", "value": False}])
    client.delete(f"/v2/images/{r.json()['id']}")


def patch(client: httpx.Client, image_id: str, ops: Any, **headers: str) -> httpx.Response:
    return client.patch(f"/v2/images/{image_id}", json=ops,
                        headers={"Content-Type": PATCH_TYPE, **headers})


def snapshot(client: httpx.Client) -> list[dict[str, Any]]:
    """Every image, hidden ones included, as an admin sees it."""
    found = []
    for hidden in ("false", "true"):
        r = client.get("/v2/images", params={"limit": 1000, "visibility": "all",
                                             "os_hidden": hidden})
        assert r.status_code == 200, r.text
        found += r.json()["images"]
    return sorted(found, key=lambda i: i["id"])


def assert_refused(
    client: httpx.Client, request: Callable[[], httpx.Response], status: int, *words: str
) -> httpx.Response:
    before = snapshot(client)
    r = request()
    assert r.status_code == status, r.text
    body = error_of(r)
    for word in words:
        assert word in body["message"], (word, body["message"])
    assert snapshot(client) == before
    return r


# -- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"name": "x", "disk_format": "floppy"}, 400, ["'floppy'", "disk_format", "qcow2"]),
    ({"name": "x", "container_format": "box"}, 400, ["container_format", "bare"]),
    ({"name": "n" * 256}, 400, ["name", "256", "255"]),
    ({"name": "x", "min_ram": "512"}, 400, ["min_ram", "integer"]),
    ({"name": "x", "min_disk": -1}, 400, ["min_disk", "negative"]),
    ({"name": "x", "hw_cpu_cores": 4}, 400, ["hw_cpu_cores", "string"]),
    ({"name": "x", "tags": "a,b"}, 400, ["tags", "array"]),
    ({"name": "x", "id": "not-a-uuid"}, 400, ["id"]),
    ({"name": "x", "status": "active"}, 403, ["'status'", "read-only"]),
    ({"name": "x", "checksum": "0" * 32}, 403, ["'checksum'", "read-only"]),
    ({"name": "x", "locations": []}, 403, ["'locations'", "reserved"]),
    ({"name": "x", "os_glance_importing_to_stores": "fs"}, 403, ["os_glance_", "reserved"]),
    (["name", "x"], 400, ["JSON object"]),
])
def test_create_refused(client: httpx.Client, body: Any, status: int, words: list[str]) -> None:
    assert_refused(client, lambda: client.post("/v2/images", json=body), status, *words)


def test_create_malformed_json(client: httpx.Client) -> None:
    assert_refused(client, lambda: client.post(
        "/v2/images", content=b'{"name": "x",', headers={"Content-Type": "application/json"}),
        400, "Malformed JSON", "line 1")


def test_create_empty_body(client: httpx.Client) -> None:
    assert_refused(client, lambda: client.post("/v2/images", content=b""), 400, "Body expected")


def test_non_admin_may_not_publish_or_give_away(client: httpx.Client) -> None:
    assert_refused(client, lambda: client.post(
        "/v2/images", json={"name": "x", "visibility": "public"}, headers=OTHER_PROJECT),
        403, "public", "admin")
    assert_refused(client, lambda: client.post(
        "/v2/images", json={"name": "x", "owner": "someone-else"}, headers=OTHER_PROJECT),
        403, "someone-else", "bad-input-other")


def test_duplicate_id(client: httpx.Client, image: dict[str, Any]) -> None:
    assert_refused(client, lambda: client.post("/v2/images", json={"id": image["id"]}),
                   409, image["id"], "already exists")


# -- list ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "words"), [
    ({"marker": "5a0e5c5e-0000-4000-8000-000000000000"}, ["marker", "5a0e5c5e"]),
    ({"sort_key": "owner"}, ["sort key", "'owner'", "created_at"]),
    ({"sort_dir": "up"}, ["sort direction", "'up'", "asc or desc"]),
    ({"sort": "name:up"}, ["sort direction"]),
    ({"sort": "name:asc", "sort_key": "id"}, ["cannot be combined"]),
    ({"name": "like:cirros"}, ["operator 'like'"]),
    ({"created_at": "since:2024-01-01T00:00:00Z"}, ["operator 'since'", "gte"]),
    ({"created_at": "gt:last-week"}, ["ISO 8601"]),
    ({"limit": "-1"}, ["limit", "positive"]),
    ({"limit": "many"}, ["limit", "integer"]),
    ({"visibility": "everyone"}, ["visibility", "'everyone'"]),
    ({"protected": "maybe"}, ["protected", "'true' or 'false'"]),
    ({"size_min": "1GB"}, ["size_min", "1GB"]),
])
def test_list_refused(client: httpx.Client, query: dict[str, str], words: list[str]) -> None:
    assert_refused(client, lambda: client.get("/v2/images", params=query), 400, *words)


def test_marker_of_an_invisible_image(client: httpx.Client) -> None:
    r = client.post("/v2/images", json={"name": "private-marker", "visibility": "private"},
                    headers=OTHER_PROJECT)
    assert r.status_code == 201
    try:
        assert_refused(client, lambda: client.get(
            "/v2/images", params={"marker": r.json()["id"]},
            headers={"X-Project-Id": "third", "X-Roles": "member"}), 400, "marker")
    finally:
        client.delete(f"/v2/images/{r.json()['id']}")


# -- show, update ----------------------------------------------------------------------------


def test_show_missing(client: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    assert_refused(client, lambda: client.get(f"/v2/images/{missing}"), 404, missing)


def test_patch_wrong_media_type(client: httpx.Client, image: dict[str, Any]) -> None:
    r = assert_refused(client, lambda: client.patch(
        f"/v2/images/{image['id']}", json=[{"op": "replace", "path": "/name", "value": "x"}],
        headers={"Content-Type": "application/json"}), 415, "application/json", PATCH_TYPE)
    assert PATCH_TYPE in r.headers["Accept-Patch"]


@pytest.mark.parametrize(("ops", "status", "words"), [
    ([{"op": "replace", "path": "/status", "value": "active"}], 403, ["'status'", "read-only"]),
    ([{"op": "replace", "path": "/id", "value": str(uuid.uuid4())}], 403, ["'id'"]),
    ([{"op": "replace", "path": "/size", "value": 1}], 403, ["'size'"]),
    ([{"op": "replace", "path": "/os_hash_value", "value": "x"}], 403, ["'os_hash_value'"]),
    ([{"op": "add", "path": "/os_glance_x", "value": "x"}], 403, ["reserved"]),
    ([{"op": "remove", "path": "/name"}], 403, ["name", "may not be removed"]),
    ([{"op": "remove", "path": "/nothere"}], 409, ["nothere", "does not exist"]),
    ([{"op": "replace", "path": "/nothere", "value": "x"}], 409, ["nothere", '"add"']),
    ([{"op": "move", "from": "/foo", "path": "/bar"}], 400, ["`move`", "add, remove, replace"]),
    ([{"op": "replace", "path": "/disk_format", "value": "floppy"}], 400, ["disk_format"]),
    ([{"op": "replace", "path": "/name", "value": "n" * 256}], 400, ["255"]),
    ([{"op": "add", "path": "/tags/-", "value": "x"}], 400, ["/tags/-"]),
    ({"op": "add", "path": "/x", "value": "y"}, 400, ["JSON array"]),
    # the first operation is valid, the second is not: neither is applied
    ([{"op": "replace", "path": "/name", "value": "half-done"},
      {"op": "replace", "path": "/checksum", "value": "x"}], 403, ["'checksum'"]),
])
def test_patch_refused(
    client: httpx.Client, image: dict[str, Any], ops: Any, status: int, words: list[str]
) -> None:
    assert_refused(client, lambda: patch(client, image["id"], ops), status, *words)


def test_patch_malformed_json(client: httpx.Client, image: dict[str, Any]) -> None:
    assert_refused(client, lambda: client.patch(
        f"/v2/images/{image['id']}", content=b"[{", headers={"Content-Type": PATCH_TYPE}),
        400, "Malformed JSON")


def test_patch_missing_image(client: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    assert_refused(client, lambda: patch(
        client, missing, [{"op": "replace", "path": "/name", "value": "x"}]), 404, missing)


def test_patch_by_another_project(client: httpx.Client, image: dict[str, Any]) -> None:
    ops = [{"op": "replace", "path": "/name", "value": "stolen"}]
    assert_refused(client, lambda: patch(client, image["id"], ops, **OTHER_PROJECT),
                   403, image["id"], "another project")


def test_non_admin_may_not_publish_own_image(client: httpx.Client) -> None:
    r = client.post("/v2/images", json={"name": "mine"}, headers=OTHER_PROJECT)
    assert r.status_code == 201
    try:
        ops = [{"op": "replace", "path": "/visibility", "value": "public"}]
        assert_refused(client, lambda: patch(client, r.json()["id"], ops, **OTHER_PROJECT),
                       403, "public", "admin")
        ops = [{"op": "replace", "path": "/owner", "value": "elsewhere"}]
        assert_refused(client, lambda: patch(client, r.json()["id"], ops, **OTHER_PROJECT),
                       403, "admin")
    finally:
        client.delete(f"/v2/images/{r.json()['id']}")


# -- delete, tags ----------------------------------------------------------------------------


def test_delete_protected(client: httpx.Client, image: dict[str, Any]) -> None:
    r = patch(client, image["id"], [{"op": "replace", "path": "/protected", "value": True}])
    assert r.status_code == 200
    assert_refused(client, lambda: client.delete(f"/v2/images/{image['id']}"),
                   403, "protected", "/protected")


def test_delete_by_another_project(client: httpx.Client, image: dict[str, Any]) -> None:
    assert_refused(client, lambda: client.delete(f"/v2/images/{image['id']}",
                                                 headers=OTHER_PROJECT), 403, "another project")


def test_private_image_of_another_project_is_not_found(client: httpx.Client) -> None:
    r = client.post("/v2/images", json={"name": "hidden", "visibility": "private"},
                    headers=OTHER_PROJECT)
    image_id = r.json()["id"]
    stranger = {"X-Project-Id": "stranger", "X-Roles": "member"}
    try:
        assert_refused(client, lambda: client.get(f"/v2/images/{image_id}", headers=stranger),
                       404, image_id)
        assert_refused(client, lambda: client.delete(f"/v2/images/{image_id}",
                                                     headers=stranger), 404, image_id)
        assert_refused(client, lambda: client.put(f"/v2/images/{image_id}/tags/x",
                                                  headers=stranger), 404, image_id)
    finally:
        client.delete(f"/v2/images/{image_id}")


def test_tag_too_long(client: httpx.Client, image: dict[str, Any]) -> None:
    assert_refused(client, lambda: client.put(f"/v2/images/{image['id']}/tags/{'t' * 256}"),
                   400, "256", "255")


def test_remove_missing_tag(client: httpx.Client, image: dict[str, Any]) -> None:
    assert_refused(client, lambda: client.delete(f"/v2/images/{image['id']}/tags/nope"),
                   404, "nope")

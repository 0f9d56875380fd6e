"""Per-project quotas on a real server: image count on create, stored bytes on upload (before
any data is accepted and while it streams), and ``GET /v2/info/usage`` in Glance's shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import glanceclient
import httpx
import pytest

from streamd.units import MiB
from tests.errors import error_of
from tests.servers import ServerProcess

COUNT = 3
SIZE_TOTAL = 3 * MiB
STAGE_TOTAL = 2 * MiB
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("quotas")
    env = {"STREAMD_QUOTA_IMAGE_COUNT": str(COUNT),
           "STREAMD_QUOTA_IMAGE_SIZE_TOTAL": str(SIZE_TOTAL),
           "STREAMD_QUOTA_IMAGE_STAGE_TOTAL": str(STAGE_TOTAL),
           "STREAMD_IMAGE_MEMBER_QUOTA": "2"}
    with ServerProcess(data_dir=root / "data", env=env) as srv:
        yield srv


@pytest.fixture
def project(quota_server: ServerProcess) -> Iterator[tuple[httpx.Client, str]]:
    """A client of a fresh project (so every test starts with no usage)."""
    name = f"quota-{uuid.uuid4().hex[:8]}"
    headers = {"X-Project-Id": name, "X-User-Id": "u", "X-Roles": "member,reader"}
    with httpx.Client(base_url=quota_server.url, headers=headers, timeout=30) as client:
        yield client, name


def new_image(client: httpx.Client, **fields: Any) -> str:
    r = client.post("/v2/images", json={"disk_format": "raw", "container_format": "bare",
                                        **fields})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def usage(client: httpx.Client) -> dict[str, dict[str, int]]:
    r = client.get("/v2/info/usage")
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def test_image_count(project: tuple[httpx.Client, str], quota_server: ServerProcess) -> None:
    client, name = project
    ids = [new_image(client, name=f"n{i}") for i in range(COUNT)]
    r = client.post("/v2/images", json={"name": "one too many"})
    assert r.status_code == 413
    message = error_of(r)["message"]
    assert "quota_image_count" in message and f"owns {COUNT} images" in message
    admin = {"X-Project-Id": "quota-admin", "X-Roles": "admin"}
    r = client.post("/v2/images", json={"name": "for them", "owner": name}, headers=admin)
    assert r.status_code == 413  # counted against the owner, whoever creates it
    assert usage(client)["image_count_total"] == {"limit": COUNT, "usage": COUNT}
    client.delete(f"/v2/images/{ids[0]}")
    new_image(client, name="fits again")


def test_bytes_stored(project: tuple[httpx.Client, str]) -> None:
    client, _ = project
    first = new_image(client, name="first")
    assert client.put(f"/v2/images/{first}/file", content=b"a" * MiB,
                      headers=OCTETS).status_code == 204
    assert usage(client)["image_size_total"] == {"limit": 3, "usage": 1}  # MiB, as Glance

    # announced past what is left (2 MiB): refused before any data is read
    second = new_image(client, name="second")
    r = client.put(f"/v2/images/{second}/file", content=b"b" * (2 * MiB + 1), headers=OCTETS)
    assert r.status_code == 413
    assert "quota_image_size_total" in error_of(r)["message"]
    # not announced (chunked): stopped when it passes the quota, and nothing is kept
    r = client.put(f"/v2/images/{second}/file", headers=OCTETS,
                   content=iter([b"c" * MiB, b"c" * MiB, b"c" * 1024]))
    assert r.status_code == 413
    assert "quota_image_size_total" in error_of(r)["message"]
    shown = client.get(f"/v2/images/{second}").json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert usage(client)["image_size_total"]["usage"] == 1

    # exactly what is left fits; then the project is full
    assert client.put(f"/v2/images/{second}/file", content=b"d" * (2 * MiB),
                      headers=OCTETS).status_code == 204
    third = new_image(client, name="third")
    r = client.put(f"/v2/images/{third}/file", content=b"e", headers=OCTETS)
    assert r.status_code == 413
    assert usage(client)["image_size_total"] == {"limit": 3, "usage": 3}
    client.delete(f"/v2/images/{first}")
    assert client.put(f"/v2/images/{third}/file", content=b"e",
                      headers=OCTETS).status_code == 204


def test_image_member_quota(project: tuple[httpx.Client, str]) -> None:
    client, _ = project
    image_id = new_image(client, name="shared widely")
    for member in ("m1", "m2"):
        assert client.post(f"/v2/images/{image_id}/members",
                           json={"member": member}).status_code == 200
    r = client.post(f"/v2/images/{image_id}/members", json={"member": "m3"})
    assert r.status_code == 413
    assert "image_member_quota" in error_of(r)["message"]
    client.delete(f"/v2/images/{image_id}/members/m1")
    assert client.post(f"/v2/images/{image_id}/members",
                       json={"member": "m3"}).status_code == 200


def test_usage_through_glanceclient(project: tuple[httpx.Client, str],
                                    quota_server: ServerProcess) -> None:
    client, name = project
    new_image(client, name="one")
    glance = glanceclient.Client("2", endpoint=quota_server.url, token="x")
    glance.http_client.session.headers.update(dict(client.headers))
    try:
        assert glance.info.get_usage() == {
            "image_size_total": {"limit": 3, "usage": 0},
            "image_stage_total": {"limit": 2, "usage": 0},
            "image_count_total": {"limit": COUNT, "usage": 1},
            "image_count_uploading": {"limit": -1, "usage": 0},
        }
    finally:
        glance.http_client.session.close()


def test_unlimited_by_default(server: ServerProcess) -> None:
    headers = {"X-Project-Id": f"free-{uuid.uuid4().hex[:8]}", "X-Roles": "member"}
    body = httpx.get(server.url + "/v2/info/usage", headers=headers).json()
    assert {k: v["limit"] for k, v in body["usage"].items()} == {
        "image_size_total": -1, "image_stage_total": -1, "image_count_total": -1,
        "image_count_uploading": -1}


def test_bytes_staged(project: tuple[httpx.Client, str]) -> None:
    client, _ = project
    first = new_image(client, name="staged")
    assert client.put(f"/v2/images/{first}/stage", content=b"s" * MiB,
                      headers=OCTETS).status_code == 204
    assert usage(client)["image_stage_total"] == {"limit": 2, "usage": 1}

    second = new_image(client, name="too much")
    announced = client.put(f"/v2/images/{second}/stage", content=b"t" * (MiB + MiB // 2),
                           headers=OCTETS)
    assert announced.status_code == 413
    assert "quota_image_stage_total" in error_of(announced)["message"]
    assert client.get(f"/v2/images/{second}").json()["status"] == "queued"

    def chunks() -> Iterator[bytes]:  # no Content-Length: stopped while it streams
        for _ in range(6):
            yield b"u" * (MiB // 4)

    streamed = client.put(f"/v2/images/{second}/stage", content=chunks(), headers=OCTETS)
    assert streamed.status_code == 413
    assert "quota_image_stage_total" in error_of(streamed)["message"]
    assert client.get(f"/v2/images/{second}").json()["status"] == "queued"
    assert usage(client)["image_stage_total"]["usage"] == 1

    # what fits still stages; deleting the first image frees its share
    assert client.put(f"/v2/images/{second}/stage", content=b"v" * (MiB // 2),
                      headers=OCTETS).status_code == 204
    assert client.delete(f"/v2/images/{first}").status_code == 204
    third = new_image(client, name="now fits")
    assert client.put(f"/v2/images/{third}/stage", content=b"w" * MiB,
                      headers=OCTETS).status_code == 204

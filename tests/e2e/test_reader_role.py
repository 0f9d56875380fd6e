"""Glance 33's default rules (secure RBAC): a reader reads, a member writes.

Asked of Glance 33 (keystone-less, trusting X-Roles): with only ``reader`` a project may list,
show and read member lists, but creating (403 add_image), changing, tagging, deleting,
uploading, staging, downloading (download_image), adding members and answering an offer are
all 403; so are callers with other roles only. ``enforce_secure_rbac = false`` restores the
legacy rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.errors import error_of
from tests.servers import ServerProcess

OWNER = {"X-Project-Id": "rbac-owner", "X-User-Id": "o", "X-Roles": "member,reader"}
OWNER_READER = {**OWNER, "X-Roles": "reader"}
GUEST = {"X-Project-Id": "rbac-guest", "X-User-Id": "g", "X-Roles": "member,reader"}
GUEST_READER = {**GUEST, "X-Roles": "reader"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTET = {"Content-Type": "application/octet-stream"}


def _shared_image(url: str) -> str:
    """An image of OWNER's, shared with GUEST (whose answer is pending)."""
    r = httpx.post(url + "/v2/images", headers=OWNER, json={
        "name": f"rbac-{uuid.uuid4().hex[:8]}", "visibility": "shared",
        "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = httpx.post(f"{url}/v2/images/{image_id}/members", headers=OWNER,
                   json={"member": GUEST["X-Project-Id"]})
    assert r.status_code == 200, r.text
    return image_id


# what a reader may not do: (name, request given the server URL and the image id)
WRITES: dict[str, Callable[[str, str], httpx.Response]] = {
    "create": lambda url, _: httpx.post(url + "/v2/images", headers=OWNER_READER,
                                        json={"name": "by-a-reader"}),
    "create-other-roles": lambda url, _: httpx.post(
        url + "/v2/images", headers={**OWNER, "X-Roles": "observer"}, json={"name": "x"}),
    "update": lambda url, i: httpx.patch(
        f"{url}/v2/images/{i}", headers={**OWNER_READER, **PATCH},
        json=[{"op": "replace", "path": "/name", "value": "renamed"}]),
    "tag": lambda url, i: httpx.put(f"{url}/v2/images/{i}/tags/t", headers=OWNER_READER),
    "delete": lambda url, i: httpx.delete(f"{url}/v2/images/{i}", headers=OWNER_READER),
    "upload": lambda url, i: httpx.put(f"{url}/v2/images/{i}/file", content=b"data",
                                       headers={**OWNER_READER, **OCTET}),
    "stage": lambda url, i: httpx.put(f"{url}/v2/images/{i}/stage", content=b"data",
                                      headers={**OWNER_READER, **OCTET}),
    "add-member": lambda url, i: httpx.post(f"{url}/v2/images/{i}/members",
                                            headers=OWNER_READER, json={"member": "third"}),
    "answer-offer": lambda url, i: httpx.put(
        f"{url}/v2/images/{i}/members/{GUEST['X-Project-Id']}", headers=GUEST_READER,
        json={"status": "accepted"}),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_reader_may_not_write(server: ServerProcess, write: str) -> None:
    image_id = _shared_image(server.url)
    before = httpx.get(f"{server.url}/v2/images/{image_id}", headers=OWNER).json()
    r = WRITES[write](server.url, image_id)
    assert r.status_code == 403, r.text
    assert "member role" in error_of(r)["message"]
    assert httpx.get(f"{server.url}/v2/images/{image_id}", headers=OWNER).json() == before
    member = httpx.get(f"{server.url}/v2/images/{image_id}/members/{GUEST['X-Project-Id']}",
                       headers=OWNER).json()
    assert member["status"] == "pending"


def test_a_reader_reads(server: ServerProcess) -> None:
    image_id = _shared_image(server.url)
    for headers in (OWNER_READER, GUEST_READER):
        assert httpx.get(f"{server.url}/v2/images/{image_id}",
                         headers=headers).status_code == 200
        listed = httpx.get(f"{server.url}/v2/images?member_status=all", headers=headers)
        assert image_id in [i["id"] for i in listed.json()["images"]]
        assert httpx.get(f"{server.url}/v2/images/{image_id}/members",
                         headers=headers).status_code == 200


def _image_with_data(url: str, visibility: str) -> str:
    r = httpx.post(url + "/v2/images", headers=OWNER, json={
        "name": f"rbac-data-{uuid.uuid4().hex[:8]}", "visibility": visibility,
        "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = httpx.put(f"{url}/v2/images/{image_id}/file", content=b"hello",
                  headers={**OWNER, **OCTET})
    assert r.status_code == 204, r.text
    return image_id


def test_a_reader_may_not_download(server: ServerProcess) -> None:
    """Asked of Glance 33: with only ``reader``, GET .../file is 403 (download_image) for the
    project's own image and for a community one; an image it may not see stays 404."""
    own = _image_with_data(server.url, "private")
    community = _image_with_data(server.url, "community")
    for image_id, headers in ((own, OWNER_READER), (community, OWNER_READER),
                              (community, GUEST_READER)):
        url = f"{server.url}/v2/images/{image_id}/file"
        assert httpx.get(f"{server.url}/v2/images/{image_id}",
                         headers=headers).status_code == 200
        for extra in ({}, {"Range": "bytes=0-1"}):
            r = httpx.get(url, headers={**headers, **extra})
            assert r.status_code == 403, r.text
            assert "member role" in error_of(r)["message"]
    r = httpx.get(f"{server.url}/v2/images/{own}/file", headers=GUEST_READER)
    assert r.status_code == 404, r.text
    for image_id in (own, community):  # a member downloads
        r = httpx.get(f"{server.url}/v2/images/{image_id}/file", headers=OWNER)
        assert (r.status_code, r.content) == (200, b"hello")


def test_the_legacy_rules_behind_a_setting(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_ENFORCE_SECURE_RBAC": "false"})
    image_id = _shared_image(srv.url)
    for write in ("create", "update", "tag", "answer-offer"):
        r = WRITES[write](srv.url, image_id)
        assert r.status_code < 300, (write, r.text)
    data = _image_with_data(srv.url, "private")
    r = httpx.get(f"{srv.url}/v2/images/{data}/file", headers=OWNER_READER)
    assert (r.status_code, r.content) == (200, b"hello")
    assert "enforce_secure_rbac = false" in srv.log()

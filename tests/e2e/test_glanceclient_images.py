"""python-glanceclient against a real streamd: the image metadata life cycle, as a user runs it.

glanceclient downloads /v2/schemas/image to validate and to build its JSON patches, follows
the ``next`` links of listings and maps status codes onto its exceptions, so these tests
cover the schemas, the serialiser and the paging as much as the routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc

from tests.servers import ServerProcess


def make_client(server: ServerProcess, **identity: str) -> Any:
    """A v2 client; without identity headers the noauth context is an anonymous admin."""
    client = glanceclient.Client(endpoint=server.url + "/v2", token="x")
    client.http_client.session.headers.update(identity)
    return client


@pytest.fixture(scope="module")
def glance(server: ServerProcess) -> Any:
    return make_client(server)


@pytest.fixture
def label() -> str:
    """A tag unique to one test, so that its listings see only its own images."""
    return f"gc-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(server: ServerProcess) -> Iterator[list[str]]:
    """Image ids to delete after the test (directly: some may be gone already)."""
    ids: list[str] = []
    yield ids
    with httpx.Client(base_url=server.url) as client:
        for image_id in ids:
            client.delete(f"/v2/images/{image_id}")


def test_create_show_delete(glance: Any, cleanup: list[str]) -> None:
    image = glance.images.create(name="cirros", disk_format="qcow2", container_format="bare",
                                 min_ram=64, hw_disk_bus="virtio", tags=["boot"])
    cleanup.append(image.id)
    assert image.status == "queued"
    assert image.visibility == "shared"
    assert image.protected is False and image.os_hidden is False
    assert image.size is None and image.checksum is None
    assert image.hw_disk_bus == "virtio"
    assert image.tags == ["boot"]
    assert image.file == f"/v2/images/{image.id}/file"

    shown = glance.images.get(image.id)
    assert dict(shown) == dict(image)

    glance.images.delete(image.id)
    ids = [i.id for i in glance.images.list(filters={"name": "cirros"})]
    assert image.id not in ids


def test_list_filters_and_sorts(glance: Any, label: str, cleanup: list[str]) -> None:
    specs = [("b-raw", "raw", "ubuntu"), ("a-qcow", "qcow2", "ubuntu"),
             ("c-qcow", "qcow2", "debian"), ("d-iso", "iso", "debian")]
    for name, disk_format, distro in specs:
        image = glance.images.create(name=f"{label}-{name}", disk_format=disk_format,
                                     container_format="bare", os_distro=distro, tags=[label])
        cleanup.append(image.id)

    def names(**kwargs: Any) -> list[str]:
        filters = {"tag": [label], **kwargs.pop("filters", {})}
        return [i.name.removeprefix(label + "-")
                for i in glance.images.list(filters=filters, **kwargs)]

    assert names(sort_key="name", sort_dir="asc") == ["a-qcow", "b-raw", "c-qcow", "d-iso"]
    assert names(sort="name:desc") == ["d-iso", "c-qcow", "b-raw", "a-qcow"]
    assert names(filters={"disk_format": "qcow2"}, sort_key="name",
                 sort_dir="asc") == ["a-qcow", "c-qcow"]
    assert names(filters={"os_distro": "debian"}, sort="name:asc") == ["c-qcow", "d-iso"]
    assert names(filters={"disk_format": "in:raw,iso"}, sort="name:asc") == ["b-raw", "d-iso"]
    assert names(filters={"name": f"{label}-a-qcow"}) == ["a-qcow"]
    assert names(sort_key=["disk_format", "name"], sort_dir=["asc", "desc"]) == [
        "d-iso", "c-qcow", "a-qcow", "b-raw"]
    assert names(filters={"tag": [label, "nope"]}) == []


def test_pages_follow_next_links(glance: Any, label: str, cleanup: list[str]) -> None:
    for i in range(30):
        cleanup.append(glance.images.create(name=f"{label}-{i:02d}", tags=[label]).id)
    pages: list[str] = []
    session = glance.http_client.session
    original = session.request

    def counting(method: str, url: str, **kwargs: Any) -> Any:
        if method == "GET" and "/v2/images?" in url:
            pages.append(url)
        return original(method, url, **kwargs)

    session.request = counting
    try:
        found = [i.name for i in glance.images.list(
            filters={"tag": [label]}, page_size=7, sort_key="name", sort_dir="asc")]
    finally:
        session.request = original
    assert found == [f"{label}-{i:02d}" for i in range(30)]
    # 7 + 7 + 7 + 7 + 2: the last page is known to be last, so no empty extra page
    assert len(pages) == 5
    assert all(f"tag={label}" in url and "sort_key=name" in url for url in pages)
    assert all("marker=" in url for url in pages[1:])

    limited = list(glance.images.list(filters={"tag": [label]}, page_size=7, limit=10))
    assert len(limited) == 10


def test_update_by_json_patch(glance: Any, cleanup: list[str]) -> None:
    image = glance.images.create(name="before", disk_format="raw", container_format="bare",
                                 old_prop="x", keep="y", tags=["t"])
    cleanup.append(image.id)
    updated = glance.images.update(image.id, name="after", foo="bar", min_disk=2,
                                   protected=True, remove_props=["old_prop"])
    assert updated.name == "after"
    assert updated.foo == "bar" and updated.keep == "y"
    assert "old_prop" not in updated
    assert updated.min_disk == 2 and updated.protected is True
    assert updated.tags == ["t"]
    glance.images.update(image.id, protected=False)
    assert glance.images.get(image.id).updated_at >= image.updated_at


def test_tags(glance: Any, cleanup: list[str]) -> None:
    image = glance.images.create(name="tagged", tags=["one"])
    cleanup.append(image.id)
    glance.image_tags.update(image.id, "two")
    glance.image_tags.update(image.id, "two")  # idempotent
    assert sorted(glance.images.get(image.id).tags) == ["one", "two"]
    glance.image_tags.delete(image.id, "one")
    assert glance.images.get(image.id).tags == ["two"]
    assert [i.id for i in glance.images.list(filters={"tag": ["two"], "name": "tagged"})] == [
        image.id]


def test_projects_see_their_own_and_public_images(
    server: ServerProcess, glance: Any, label: str, cleanup: list[str]
) -> None:
    alice = make_client(server, **{"X-Project-Id": f"{label}-alice", "X-User-Id": "alice",
                                   "X-Roles": "member,reader"})
    bob = make_client(server, **{"X-Project-Id": f"{label}-bob", "X-User-Id": "bob",
                                 "X-Roles": "member"})
    mine = alice.images.create(name="alice-private", visibility="private", tags=[label])
    shared = alice.images.create(name="alice-shared", tags=[label])
    community = alice.images.create(name="alice-community", visibility="community",
                                    tags=[label])
    public = glance.images.create(name="admin-public", visibility="public", tags=[label])
    cleanup.extend([mine.id, shared.id, community.id, public.id])
    assert mine.owner == f"{label}-alice"

    def listed(client: Any, **filters: Any) -> set[str]:
        return {i.name for i in client.images.list(filters={"tag": [label], **filters})}

    assert listed(alice) == {"alice-private", "alice-shared", "alice-community", "admin-public"}
    assert listed(bob) == {"admin-public"}
    assert listed(bob, visibility="community") == {"alice-community"}
    assert listed(bob, visibility="all") == {"admin-public", "alice-community"}
    assert listed(glance, visibility="all") == listed(alice)

    alice.images.update(mine.id, name="renamed")
    assert alice.images.get(mine.id).name == "renamed"
    assert bob.images.get(public.id).name == "admin-public"


def test_errors_map_to_glanceclient_exceptions(server: ServerProcess, glance: Any) -> None:
    bob = make_client(server, **{"X-Project-Id": "errors-bob", "X-Roles": "member"})
    missing = str(uuid.uuid4())
    with pytest.raises(exc.HTTPNotFound) as not_found:
        bob.images.get(missing)
    assert missing in str(not_found.value)
    with pytest.raises(exc.HTTPBadRequest) as bad:
        bob.images.list(sort_key="bogus").__next__()
    assert "bogus" in str(bad.value)
    image = bob.images.create(name="guarded", protected=True)
    with pytest.raises(exc.HTTPForbidden) as forbidden:
        bob.images.delete(image.id)
    assert "protected" in str(forbidden.value)
    bob.images.update(image.id, protected=False)
    bob.images.delete(image.id)

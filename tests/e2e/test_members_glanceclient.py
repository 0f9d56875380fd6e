"""Image sharing driven by python-glanceclient, as users run it: the owner offers a shared
image, the member accepts or rejects it, the owner withdraws it; and Glance's refusals.

glanceclient fetches /v2/schemas/member to build its member models, so these tests cover
the member schema and the member JSON as well as the routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import glanceclient
import pytest
from glanceclient import exc

from tests.servers import ServerProcess


def client_for(server: ServerProcess, project: str, roles: str = "member,reader") -> Any:
    client = glanceclient.Client("2", endpoint=server.url, token="x")
    client.http_client.session.headers.update(
        {"X-Project-Id": project, "X-User-Id": f"user-of-{project}", "X-Roles": roles})
    return client


@pytest.fixture
def projects() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {name: f"gm-{run}-{name}" for name in ("owner", "alice", "bob", "other", "admin")}


@pytest.fixture
def clients(server: ServerProcess, projects: dict[str, str]) -> Iterator[dict[str, Any]]:
    made = {name: client_for(server, project) for name, project in projects.items()}
    made["admin"] = client_for(server, projects["admin"], "admin")
    images: list[str] = []
    made["created"] = images
    yield made
    for image_id in images:
        try:
            made["admin"].images.delete(image_id)
        except exc.HTTPNotFound:
            pass
    for name in projects:  # idle keep-alive connections would hold up the server's shutdown
        made[name].http_client.session.close()


def shared_image(clients: dict[str, Any], **fields: Any) -> Any:
    image = clients["owner"].images.create(name="to-share", **fields)
    clients["created"].append(image.id)
    return image


def listed(client: Any, image_id: str, **filters: str) -> bool:
    return image_id in [i.id for i in client.images.list(filters=filters)]


def test_offer_accept_reject_withdraw(clients: dict[str, Any], projects: dict[str, str]) -> None:
    owner, alice, bob = clients["owner"], clients["alice"], clients["bob"]
    image = shared_image(clients)
    assert image.visibility == "shared"

    offered = owner.image_members.create(image.id, projects["alice"])
    assert offered.member_id == projects["alice"] and offered.image_id == image.id
    assert offered.status == "pending"
    owner.image_members.create(image.id, projects["bob"])
    assert sorted(m.member_id for m in owner.image_members.list(image.id)) == sorted(
        [projects["alice"], projects["bob"]])

    # pending: alice can show it, but her listing leaves it out until she accepts
    assert alice.images.get(image.id).id == image.id
    assert not listed(alice, image.id)
    assert listed(alice, image.id, member_status="pending")
    accepted = alice.image_members.update(image.id, projects["alice"], "accepted")
    assert accepted.status == "accepted"
    assert listed(alice, image.id)
    assert [m.member_id for m in alice.image_members.list(image.id)] == [projects["alice"]]

    bob.image_members.update(image.id, projects["bob"], "rejected")
    assert not listed(bob, image.id)
    assert listed(bob, image.id, member_status="rejected")
    assert bob.images.get(image.id).id == image.id  # rejected members still see it

    # the owner withdraws the offer: alice no longer sees the image at all
    owner.image_members.delete(image.id, projects["alice"])
    assert [m.member_id for m in owner.image_members.list(image.id)] == [projects["bob"]]
    with pytest.raises(exc.HTTPNotFound):
        alice.images.get(image.id)
    assert not listed(alice, image.id, member_status="all")


def test_refusals_as_glance(clients: dict[str, Any], projects: dict[str, str]) -> None:
    owner, alice, other, admin = (clients[n] for n in ("owner", "alice", "other", "admin"))
    image = shared_image(clients)
    owner.image_members.create(image.id, projects["alice"])

    with pytest.raises(exc.HTTPConflict, match="already a member"):
        owner.image_members.create(image.id, projects["alice"])
    with pytest.raises(exc.HTTPForbidden, match="only the member project itself"):
        owner.image_members.update(image.id, projects["alice"], "accepted")
    with pytest.raises(exc.HTTPForbidden, match="only its owner"):
        alice.image_members.create(image.id, projects["bob"])
    with pytest.raises(exc.HTTPForbidden, match="only its owner"):
        alice.image_members.delete(image.id, projects["alice"])
    for call in (lambda: list(other.image_members.list(image.id)),
                 lambda: other.image_members.create(image.id, projects["other"]),
                 lambda: other.image_members.update(image.id, projects["other"], "accepted")):
        with pytest.raises(exc.HTTPNotFound):  # the image does not exist for `other`
            call()
    with pytest.raises(exc.HTTPNotFound, match="not found in the member list"):
        owner.image_members.delete(image.id, projects["bob"])
    with pytest.raises(exc.HTTPBadRequest, match="Status must be"):
        alice.image_members.update(image.id, projects["alice"], "maybe")

    # admins may add, answer for a member and remove (as in Glance)
    admin.image_members.create(image.id, projects["bob"])
    assert admin.image_members.update(image.id, projects["bob"], "accepted").status == "accepted"
    admin.image_members.delete(image.id, projects["bob"])

    # only shared images have members: 403 for the owner of a private/community image
    for visibility in ("private", "community"):
        other_image = shared_image(clients, visibility=visibility)
        with pytest.raises(exc.HTTPForbidden, match="only shared images have members"):
            owner.image_members.create(other_image.id, projects["alice"])
        with pytest.raises(exc.HTTPForbidden, match="only shared images have members"):
            list(owner.image_members.list(other_image.id))
    public = admin.images.create(name="public", visibility="public")
    clients["created"].append(public.id)
    with pytest.raises(exc.HTTPForbidden, match="only shared images have members"):
        admin.image_members.create(public.id, projects["alice"])


def test_member_entries_survive_visibility_changes(
    clients: dict[str, Any], projects: dict[str, str]
) -> None:
    """As in Glance: making a shared image private suspends its members' access, making it
    shared again restores it; deleting the image removes its member entries."""
    owner, alice = clients["owner"], clients["alice"]
    image = shared_image(clients)
    owner.image_members.create(image.id, projects["alice"])
    alice.image_members.update(image.id, projects["alice"], "accepted")
    owner.images.update(image.id, visibility="private")
    with pytest.raises(exc.HTTPNotFound):
        alice.images.get(image.id)
    owner.images.update(image.id, visibility="shared")
    assert listed(alice, image.id)
    assert [m.status for m in owner.image_members.list(image.id)] == ["accepted"]
    owner.images.delete(image.id)
    assert not listed(alice, image.id, member_status="all")


def test_member_schemas(server: ServerProcess) -> None:
    import httpx

    member = httpx.get(server.url + "/v2/schemas/member").json()
    assert member["name"] == "member"
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = httpx.get(server.url + "/v2/schemas/members").json()
    assert members["properties"]["members"]["items"] == member

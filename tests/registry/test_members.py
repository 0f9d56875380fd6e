"""Image members in the registry, on SQLite, PostgreSQL and MariaDB: the rows, and the images
a listing shows a project because they are shared with it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.registry import (
    Filter,
    ImageQuery,
    ImageRegistry,
    MemberRegistry,
    Viewer,
    project_usage,
)
from tests.registry.conftest import FakeClock


@pytest.fixture
def members(engine: sa.Engine, clock: FakeClock) -> MemberRegistry:
    return MemberRegistry(engine, clock=clock)


def test_add_answer_list_remove(registry: ImageRegistry, members: MemberRegistry,
                                clock: FakeClock) -> None:
    image = registry.create({"name": "shared", "owner": "owner"})
    added = members.add(image.id, "alice")
    assert (added.image_id, added.member_id, added.status) == (image.id, "alice", "pending")
    assert added.created_at == added.updated_at == clock.now
    clock.advance()
    members.add(image.id, "Alice")  # project ids are compared exactly
    assert members.get(image.id, "alice") == added
    assert members.find(image.id, "bob") is None
    assert [m.member_id for m in members.list(image.id)] == ["alice", "Alice"]
    assert members.count(image.id) == 2

    clock.advance()
    accepted = members.set_status(image.id, "alice", "accepted")
    assert accepted.status == "accepted" and accepted.updated_at == clock.now
    assert accepted.created_at == added.created_at

    members.remove(image.id, "alice")
    assert [m.member_id for m in members.list(image.id)] == ["Alice"]


def test_missing_and_duplicate(registry: ImageRegistry, members: MemberRegistry) -> None:
    image = registry.create({"name": "shared", "owner": "owner"})
    members.add(image.id, "alice")
    with pytest.raises(Conflict, match="duplicated"):
        members.add(image.id, "alice")
    with pytest.raises(NotFound, match="bob not found in the member list"):
        members.get(image.id, "bob")
    with pytest.raises(NotFound, match="bob not found"):
        members.set_status(image.id, "bob", "accepted")
    with pytest.raises(NotFound, match="bob not found"):
        members.remove(image.id, "bob")
    with pytest.raises(NotFound, match="No image found"):
        members.add("6a3b4b0e-0000-0000-0000-000000000000", "alice")


def test_deleting_the_image_removes_its_members(registry: ImageRegistry,
                                               members: MemberRegistry) -> None:
    image = registry.create({"name": "shared", "owner": "owner"})
    members.add(image.id, "alice")
    registry.delete(image.id)
    assert members.list(image.id) == []


def ids(registry: ImageRegistry, viewer: Viewer, **query: object) -> set[str]:
    return {i.id for i in registry.list(ImageQuery(viewer=viewer, limit=100, **query))}


def test_listing_shows_offered_images_by_member_status(
    registry: ImageRegistry, members: MemberRegistry, clock: FakeClock
) -> None:
    offered = {}
    for status in ("pending", "accepted", "rejected"):
        clock.advance()
        image = registry.create({"name": status, "owner": "owner"})
        members.add(image.id, "alice")
        if status != "pending":
            members.set_status(image.id, "alice", status)
        offered[status] = image.id
    private = registry.create({"name": "private", "owner": "owner", "visibility": "private"})
    members.add(private.id, "alice")  # an entry left from when it was shared
    members.set_status(private.id, "alice", "accepted")
    own = registry.create({"name": "own", "owner": "alice"})
    alice, bob = Viewer("alice"), Viewer("bob")

    assert ids(registry, alice) == {offered["accepted"], own.id}
    for status in ("pending", "rejected"):
        assert ids(registry, alice, member_status=status) == {offered[status], own.id}
    assert ids(registry, alice, member_status="all") == {*offered.values(), own.id}
    shared = (Filter("visibility", "eq", "shared"),)
    assert ids(registry, alice, filters=shared) == {offered["accepted"], own.id}
    assert ids(registry, alice, filters=(Filter("visibility", "eq", "private"),),
               member_status="all") == set()
    assert ids(registry, bob, member_status="all") == set()
    # admins see every image; member_status does not narrow their listings (as in Glance)
    admin = Viewer("admin-project", is_admin=True)
    assert ids(registry, admin, member_status="pending") == {*offered.values(), private.id,
                                                             own.id}


def test_marker_of_an_offered_image(registry: ImageRegistry, members: MemberRegistry,
                                    clock: FakeClock) -> None:
    older = registry.create({"name": "older", "owner": "alice"})
    clock.advance()
    image = registry.create({"name": "offered", "owner": "owner"})
    members.add(image.id, "alice")  # pending: visible to alice, not listed by default
    page = registry.list(ImageQuery(viewer=Viewer("alice"), marker=image.id))
    assert [i.id for i in page] == [older.id]
    with pytest.raises(BadRequest, match="Invalid marker"):
        registry.list(ImageQuery(viewer=Viewer("bob"), marker=image.id))


def test_pages_merge_own_public_and_offered_images(
    registry: ImageRegistry, members: MemberRegistry, clock: FakeClock
) -> None:
    expected = []
    for i in range(9):
        clock.advance()
        kind = ("own", "public", "offered")[i % 3]
        image = registry.create({
            "name": f"{kind}-{i}", "owner": "alice" if kind == "own" else "owner",
            "visibility": "public" if kind == "public" else "shared"})
        if kind == "offered":
            members.add(image.id, "alice")
            members.set_status(image.id, "alice", "accepted")
        expected.append(image.id)
    registry.create({"name": "not-offered", "owner": "owner"})
    seen, marker = [], None
    while True:
        page = registry.list(ImageQuery(viewer=Viewer("alice"), marker=marker, limit=2))
        seen += [i.id for i in page]
        if len(page) < 2:
            break
        marker = page[-1].id
    assert seen == expected[::-1]


def test_usage(registry: ImageRegistry) -> None:
    registry.create({"name": "a", "owner": "p", "size": 100, "status": "active"})
    registry.create({"name": "b", "owner": "p", "status": "saving"})
    registry.create({"name": "c", "owner": "p", "size": 5, "status": "active"})
    registry.create({"name": "d", "owner": "q", "size": 1000, "status": "active"})
    usage = project_usage(registry.engine, "p")
    assert (usage.image_count, usage.image_size_total, usage.image_count_uploading) == (
        3, 105, 1)
    empty = project_usage(registry.engine, "nobody")
    assert (empty.image_count, empty.image_size_total, empty.image_count_uploading) == (0, 0, 0)


def test_marker_of_an_image_without_owner(registry: ImageRegistry, clock: FakeClock) -> None:
    """Glance shows images without an owner to everyone, so they are valid markers too."""
    orphan = registry.create({"name": "orphan", "owner": None, "visibility": "private"})
    assert registry.list(ImageQuery(viewer=Viewer("bob"), marker=orphan.id)) == []

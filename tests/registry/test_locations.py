"""Copies of an image's data in several stores (``image_locations``) on every database:
written by uploads, added and removed one store at a time, read with every record."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from streamd.errors import Conflict, Forbidden, NotFound
from streamd.registry import ImageQuery, ImageRecord, ImageRegistry, StoredCopy, Viewer
from tests.registry.conftest import FakeClock

ADMIN = ImageQuery(viewer=Viewer("admin", is_admin=True), limit=100)


def uploaded(registry: ImageRegistry, store: str = "file", location: str = "file:///a") -> str:
    """An active image whose data was just written to ``store``: its one copy."""
    image = registry.create({"name": "up"})
    registry.transition(image.id, "queued", "saving")
    registry.transition(image.id, "saving", "active",
                        {"size": 3, "location": location, "store": store})
    return image.id


def test_an_upload_is_the_first_copy(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "file:///data/x")
    image = registry.get(image_id)
    assert image.locations == (StoredCopy("file", "file:///data/x"),)
    assert (image.location, image.store, image.stores) == ("file:///data/x", "file", ("file",))


def test_an_image_without_data_has_no_copies(registry: ImageRegistry) -> None:
    image = registry.create({"name": "empty"})
    assert registry.get(image.id).locations == () == image.locations
    assert (image.location, image.store, image.stores) == (None, None, ())


def test_writing_a_location_replaces_every_copy(registry: ImageRegistry, clock: FakeClock) -> None:
    image_id = uploaded(registry, "file", "file:///one")
    clock.advance()
    registry.add_location(image_id, "swift", "swift://c/one")
    # the image goes back to queued and is uploaded again, elsewhere
    registry.transition(image_id, "active", "queued")
    again = registry.transition(image_id, "queued", "active",
                                {"location": "s3://b/two", "store": "s3"})
    assert again.locations == (StoredCopy("s3", "s3://b/two"),)
    none = registry.update(image_id, {"location": None})
    assert none.locations == () and registry.get(image_id).locations == ()


def test_a_failed_transition_writes_no_copy(registry: ImageRegistry) -> None:
    image = registry.create({})
    with pytest.raises(Conflict):
        registry.transition(image.id, "saving", "active", {"location": "x", "store": "file"})
    assert registry.get(image.id).locations == ()


def test_a_location_needs_its_store(registry: ImageRegistry) -> None:
    image = registry.create({})
    with pytest.raises(ValueError, match="store"):
        registry.update(image.id, {"location": "file:///x"})
    with pytest.raises(ValueError, match="location"):
        registry.update(image.id, {"store": "file"})
    assert registry.get(image.id).locations == ()


def test_create_with_a_copy_returns_what_a_read_returns(registry: ImageRegistry) -> None:
    created = registry.create({"name": "x", "status": "active", "location": "file:///c",
                               "store": "file"})
    assert created.locations == (StoredCopy("file", "file:///c"),)
    assert registry.get(created.id) == created


def test_add_and_remove_copies(registry: ImageRegistry, clock: FakeClock) -> None:
    image_id = uploaded(registry, "file", "file:///a")
    clock.advance()
    added = registry.add_location(image_id, "swift", "swift://images/a")
    assert added.stores == ("file", "swift")
    assert added.updated_at == clock.now
    assert registry.get(image_id) == added
    clock.advance()
    left = registry.remove_location(image_id, "file")
    assert left.locations == (StoredCopy("swift", "swift://images/a"),)
    assert (left.location, left.store) == ("swift://images/a", "swift")
    assert left.updated_at == clock.now
    assert registry.get(image_id) == left


def test_copies_are_ordered_by_age(registry: ImageRegistry, clock: FakeClock) -> None:
    image_id = uploaded(registry, "m-first", "l0")
    registry.add_location(image_id, "b", "l1")  # same second as the upload: still after it
    clock.advance()
    registry.add_location(image_id, "z", "l2")
    registry.add_location(image_id, "a", "l3")  # same second as z: after z
    assert registry.get(image_id).stores == ("m-first", "b", "z", "a")
    [listed] = registry.list(ADMIN)
    assert listed.stores == ("m-first", "b", "z", "a")


def test_add_only_to_an_active_image(registry: ImageRegistry) -> None:
    image = registry.create({})
    with pytest.raises(Conflict, match="is queued.*active"):
        registry.add_location(image.id, "file", "file:///x")
    deactivated = uploaded(registry)
    registry.transition(deactivated, "active", "deactivated")
    with pytest.raises(Conflict, match="is deactivated"):
        registry.add_location(deactivated, "swift", "swift://x")
    assert registry.get(deactivated).stores == ("file",)
    with pytest.raises(NotFound):
        registry.add_location("00000000-0000-0000-0000-000000000000", "file", "x")


def test_a_store_holds_one_copy_of_an_image(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "file:///a")
    with pytest.raises(Conflict, match="already has a copy in store file"):
        registry.add_location(image_id, "file", "file:///b")
    assert registry.get(image_id).locations == (StoredCopy("file", "file:///a"),)


def test_the_last_copy_is_not_removed(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "file:///a")
    before = registry.get(image_id)
    with pytest.raises(Forbidden, match="only copy.*delete the image"):
        registry.remove_location(image_id, "file")
    assert registry.get(image_id) == before  # updated_at untouched too


def test_removing_what_is_not_there(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "file:///a")
    with pytest.raises(NotFound, match="no data in store swift"):
        registry.remove_location(image_id, "swift")
    with pytest.raises(NotFound, match="No image found"):
        registry.remove_location("00000000-0000-0000-0000-000000000000", "file")
    empty = registry.create({})
    with pytest.raises(NotFound):
        registry.remove_location(empty.id, "file")


def test_remove_with_expected_status(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "f")
    registry.add_location(image_id, "swift", "s")
    registry.transition(image_id, "active", "deactivated")
    with pytest.raises(Conflict, match="is deactivated"):
        registry.remove_location(image_id, "swift", expected_status=["active"])
    assert registry.get(image_id).stores == ("file", "swift")
    assert registry.remove_location(image_id, "swift").stores == ("file",)


def test_delete_takes_the_copies_with_it(registry: ImageRegistry, engine: sa.Engine) -> None:
    gone = uploaded(registry, "file", "file:///gone")
    registry.add_location(gone, "swift", "swift://gone")
    kept = uploaded(registry, "file", "file:///kept")
    assert registry.delete(gone).stores == ("file", "swift")
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT image_id FROM image_locations").scalars().all()
    assert left == [kept]


def test_the_database_cascades_a_deleted_image_to_its_copies(
    registry: ImageRegistry, engine: sa.Engine
) -> None:
    """The foreign key itself, for whoever deletes an image row without the registry."""
    image_id = uploaded(registry)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM images WHERE id = :id"), {"id": image_id})
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM image_locations").scalar() == 0


def test_a_copy_of_a_missing_image_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO image_locations (image_id, store, location, created_at) "
            "VALUES ('nope', 'file', 'x', '2024-01-01 00:00:00')"))


def test_a_page_reads_its_copies_in_one_query(registry: ImageRegistry,
                                              engine: sa.Engine) -> None:
    ids = [uploaded(registry, "file", f"file:///{i}") for i in range(5)]
    for image_id in ids[:3]:
        registry.add_location(image_id, "swift", f"swift://{image_id}")
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        page = registry.list(ADMIN)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len([s for s in sent if "image_locations" in s]) == 1
    assert {i.id: i.stores for i in page} == {
        i: ("file", "swift") if i in ids[:3] else ("file",) for i in ids}


def test_images_in_store_pages_through_one_store(registry: ImageRegistry) -> None:
    ids = sorted(uploaded(registry, "file", f"file:///{i}") for i in range(5))
    for image_id in ids[1:4]:
        registry.add_location(image_id, "swift", f"swift://{image_id}")
    first = registry.images_in_store("swift", limit=2)
    assert first == [(ids[1], f"swift://{ids[1]}"), (ids[2], f"swift://{ids[2]}")]
    rest = registry.images_in_store("swift", limit=2, marker=first[-1][0])
    assert rest == [(ids[3], f"swift://{ids[3]}")]
    assert registry.images_in_store("swift", limit=2, marker=rest[-1][0]) == []
    assert [i for i, _ in registry.images_in_store("file")] == ids
    assert registry.images_in_store("s3") == []


# -- racing ------------------------------------------------------------------------------------


def race(racers: int, calls: Callable[[int], object]) -> list[str]:
    """``calls(i)`` in ``racers`` threads released at once: "won" or the error's class name."""
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def racer(i: int) -> None:
        barrier.wait()
        try:
            calls(i)
            outcomes.append("won")
        except (Conflict, Forbidden) as e:
            outcomes.append(type(e).__name__)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_racing_removals_never_remove_the_last_copy(registry: ImageRegistry) -> None:
    for _ in range(3):
        image_id = uploaded(registry, "a", "la")
        registry.add_location(image_id, "b", "lb")
        outcomes = race(2, lambda i, image_id=image_id: registry.remove_location(image_id, "ab"[i]))
        assert outcomes == ["Forbidden", "won"]
        assert len(registry.get(image_id).locations) == 1


def test_racing_adds_of_one_store_have_one_winner(registry: ImageRegistry) -> None:
    image_id = uploaded(registry, "file", "file:///x")
    outcomes = race(4, lambda i: registry.add_location(image_id, "swift", f"swift://{i}"))
    assert outcomes == ["Conflict"] * 3 + ["won"]
    assert registry.get(image_id).stores == ("file", "swift")


# -- the record --------------------------------------------------------------------------------


def _record(**changes: Any) -> ImageRecord:
    import datetime as dt

    fields: dict[str, Any] = dict(
        id="i", name=None, status="active", visibility="shared", owner=None, size=None,
        virtual_size=None, disk_format=None, container_format=None, checksum=None,
        os_hash_algo=None, os_hash_value=None, xxh3=None, min_disk=0, min_ram=0,
        protected=False, os_hidden=False, created_at=dt.datetime(2024, 1, 1),
        updated_at=dt.datetime(2024, 1, 1))
    return ImageRecord(**{**fields, **changes})


def test_the_record_still_takes_one_location_and_store() -> None:
    """Callers of the single-copy time construct and replace records as they did."""
    one = _record(location="file:///x", store="file")
    assert one.locations == (StoredCopy("file", "file:///x"),)
    assert _record(location=None, store=None).locations == ()
    two = dataclasses.replace(one, locations=(*one.locations, StoredCopy("swift", "s")))
    assert two.stores == ("file", "swift") and two.location == "file:///x"
    assert dataclasses.replace(two, location=None).locations == ()
    assert dataclasses.replace(two, name="kept").locations == two.locations
    assert dataclasses.replace(one, location="file:///y").locations == (
        StoredCopy("file", "file:///y"),)
    with pytest.raises(ValueError, match="store"):
        _record(location="file:///x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.name = "changed"  # type: ignore[misc]
    assert "locations" in {f.name for f in dataclasses.fields(one)}
    assert {"location", "store"}.isdisjoint(f.name for f in dataclasses.fields(one))
    assert repr(one).startswith("ImageRecord(")

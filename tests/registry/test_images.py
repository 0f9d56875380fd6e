"""ImageRegistry's single-image operations on every database: create, read, change, delete."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from streamd.errors import Conflict, NotFound, ServiceUnavailable
from streamd.registry import ImageQuery, ImageRegistry, Viewer, make_engine
from tests.registry.conftest import FakeClock


def test_create_and_get(registry: ImageRegistry, clock: FakeClock) -> None:
    created = registry.create(
        {"name": "cirros", "owner": "p1", "visibility": "private", "disk_format": "qcow2",
         "container_format": "bare", "min_disk": 1, "min_ram": 64},
        properties={"os_distro": "cirros", "hw_disk_bus": "virtio"},
        tags=["b", "a", "b"],
    )
    uuid.UUID(created.id)
    got = registry.get(created.id)
    assert got == created
    assert (got.name, got.owner, got.visibility, got.status) == ("cirros", "p1", "private",
                                                                 "queued")
    assert (got.disk_format, got.container_format, got.min_disk, got.min_ram) == (
        "qcow2", "bare", 1, 64)
    assert got.protected is False and got.os_hidden is False
    assert got.size is None and got.checksum is None
    assert got.properties == {"os_distro": "cirros", "hw_disk_bus": "virtio"}
    assert got.tags == ("a", "b")
    assert got.created_at == got.updated_at == clock.now


def test_defaults(registry: ImageRegistry) -> None:
    image = registry.create({})
    assert (image.status, image.visibility, image.min_disk, image.min_ram) == (
        "queued", "shared", 0, 0)
    assert image.name is None and image.properties == {} and image.tags == ()


def test_create_with_given_id_and_duplicate_is_conflict(registry: ImageRegistry) -> None:
    image_id = str(uuid.uuid4())
    assert registry.create({"name": "one"}, image_id=image_id).id == image_id
    with pytest.raises(Conflict, match=image_id):
        registry.create({"name": "two"}, image_id=image_id, properties={"a": "b"})
    assert registry.get(image_id).name == "one"
    assert registry.count() == 1


def test_not_found(registry: ImageRegistry) -> None:
    missing = str(uuid.uuid4())
    for call in (
        lambda: registry.get(missing),
        lambda: registry.update(missing, {"name": "x"}),
        lambda: registry.transition(missing, "queued", "saving"),
        lambda: registry.delete(missing),
        lambda: registry.add_tag(missing, "t"),
        lambda: registry.remove_tag(missing, "t"),
    ):
        with pytest.raises(NotFound, match=missing):
            call()


def test_update_core_fields_and_updated_at(registry: ImageRegistry, clock: FakeClock) -> None:
    image = registry.create({"name": "a"})
    clock.advance(5)
    updated = registry.update(image.id, {"name": "b", "protected": True, "size": 2**40,
                                         "not_a_column": "ignored"})
    assert (updated.name, updated.protected, updated.size) == ("b", True, 2**40)
    assert updated.created_at == image.created_at
    assert updated.updated_at == clock.now != image.updated_at


def test_set_and_remove_properties(registry: ImageRegistry) -> None:
    image = registry.create({}, properties={"a": "1", "b": "2"})
    image = registry.update(image.id, set_properties={"b": "two", "c": "3"})
    assert image.properties == {"a": "1", "b": "two", "c": "3"}
    image = registry.update(image.id, remove_properties=["a", "not-there"])
    assert image.properties == {"b": "two", "c": "3"}
    # set and remove in one change; long values are kept whole
    image = registry.update(image.id, set_properties={"d": "x" * 10_000}, remove_properties=["b"])
    assert image.properties == {"c": "3", "d": "x" * 10_000}


def test_replace_tags(registry: ImageRegistry) -> None:
    image = registry.create({}, tags=["a", "b"])
    assert registry.update(image.id, tags=["c", "c", "d"]).tags == ("c", "d")
    assert registry.update(image.id, tags=[]).tags == ()


def test_tags_add_remove_idempotent(registry: ImageRegistry, clock: FakeClock) -> None:
    image = registry.create({})
    clock.advance()
    registry.add_tag(image.id, "x")
    registry.add_tag(image.id, "x")
    got = registry.get(image.id)
    assert got.tags == ("x",)
    assert got.updated_at == clock.now
    registry.remove_tag(image.id, "x")
    assert registry.get(image.id).tags == ()
    with pytest.raises(NotFound, match="Tag x"):
        registry.remove_tag(image.id, "x")


def test_tags_and_names_are_case_sensitive(registry: ImageRegistry) -> None:
    """MySQL's default collation would call these equal; the registry must not."""
    image = registry.create({"name": "Ubuntu"}, tags=["Prod", "prod"],
                           properties={"Os": "A", "os": "a"})
    assert image.tags == ("Prod", "prod")
    assert image.properties == {"Os": "A", "os": "a"}
    registry.add_tag(image.id, "PROD")
    assert registry.get(image.id).tags == ("PROD", "Prod", "prod")
    registry.remove_tag(image.id, "prod")
    assert registry.get(image.id).tags == ("PROD", "Prod")


def test_concurrent_add_of_one_tag(registry: ImageRegistry) -> None:
    image = registry.create({})
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def add() -> None:
        barrier.wait()
        try:
            registry.add_tag(image.id, "same")
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert registry.get(image.id).tags == ("same",)


def test_delete(registry: ImageRegistry, engine: sa.Engine) -> None:
    image = registry.create({"name": "gone"}, properties={"a": "1"}, tags=["t"])
    keep = registry.create({"name": "kept"}, properties={"a": "1"}, tags=["t"])
    assert registry.delete(image.id) == image
    with pytest.raises(NotFound):
        registry.get(image.id)
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT image_id FROM image_properties").scalars().all()
        assert left == [keep.id]
        left = conn.exec_driver_sql("SELECT image_id FROM image_tags").scalars().all()
        assert left == [keep.id]
    assert registry.count() == 1


# -- status transitions ------------------------------------------------------------------------


def test_transition(registry: ImageRegistry) -> None:
    image = registry.create({})
    saving = registry.transition(image.id, "queued", "saving")
    assert saving.status == "saving"
    with pytest.raises(Conflict, match="is saving.*needs it to be queued"):
        registry.transition(image.id, "queued", "saving")
    active = registry.transition(image.id, ("saving", "importing"), "active",
                                 {"size": 10, "checksum": "c" * 32})
    assert (active.status, active.size, active.checksum) == ("active", 10, "c" * 32)


def test_failed_transition_changes_nothing(registry: ImageRegistry, clock: FakeClock) -> None:
    image = registry.transition(registry.create({}).id, "queued", "active")
    clock.advance()
    with pytest.raises(Conflict):
        registry.transition(image.id, "queued", "saving", {"size": 99})
    assert registry.get(image.id) == image


def test_update_with_expected_status(registry: ImageRegistry) -> None:
    image = registry.create({})
    with pytest.raises(Conflict):
        registry.update(image.id, {"size": 1}, expected_status=["active"])
    assert registry.update(image.id, {"size": 1}, expected_status=["queued"]).size == 1


def _race(racers: int, call: object) -> list[str]:
    """Run ``call`` in ``racers`` threads released at once; "won" or "conflict" for each."""
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def racer() -> None:
        barrier.wait()
        try:
            call()  # type: ignore[operator]
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


@pytest.mark.parametrize("racers", [2, 8])
def test_racing_transitions_have_one_winner(registry: ImageRegistry, racers: int) -> None:
    """Many threads, each with its own connection, start the same transition at once."""
    for _ in range(5):
        image_id = registry.create({}).id
        outcomes = _race(racers, lambda i=image_id: registry.transition(i, "queued", "saving"))
        assert outcomes == ["conflict"] * (racers - 1) + ["won"]
        assert registry.get(image_id).status == "saving"


# -- a database that is briefly gone ------------------------------------------------------------


def _kill_connections(engine: sa.Engine, backend: str) -> int:
    """Terminate, from a separate connection, every server connection of ``engine``'s database."""
    if backend == "sqlite":
        engine.dispose()
        return 0
    database = engine.url.database
    with sa.create_engine(engine.url, isolation_level="AUTOCOMMIT").connect() as admin:
        if backend == "postgresql":
            return len(admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %(db)s AND pid <> pg_backend_pid()", {"db": database}
            ).all())
        mine = admin.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        ids = admin.exec_driver_sql(
            "SELECT id FROM information_schema.processlist WHERE db = %(db)s AND id <> %(me)s",
            {"db": database, "me": mine},
        ).scalars().all()
        for conn_id in ids:
            admin.exec_driver_sql(f"KILL {int(conn_id)}")
        return len(ids)


def test_next_call_works_after_connections_die(
    registry: ImageRegistry, engine: sa.Engine, backend: str
) -> None:
    image = registry.create({"name": "survivor"})
    # fill the pool with a few idle connections
    threads = [threading.Thread(target=registry.get, args=(image.id,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    killed = _kill_connections(engine, backend)
    if backend != "sqlite":
        assert killed >= 1
    assert registry.get(image.id).name == "survivor"
    assert registry.update(image.id, {"name": "still here"}).name == "still here"
    admin = ImageQuery(viewer=Viewer(project_id="admin", is_admin=True))
    assert [i.id for i in registry.list(admin)] == [image.id]


def test_unreachable_database_is_service_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    try:
        with pytest.raises(ServiceUnavailable, match="retry") as raised:
            ImageRegistry(engine).get(str(uuid.uuid4()))
        assert raised.value.headers["Retry-After"] == "1"
        assert "127.0.0.1" not in raised.value.message
    finally:
        engine.dispose()



@pytest.mark.parametrize("values, properties, tags", [
    ({}, {}, []),
    ({"name": "full", "disk_format": "qcow2", "container_format": "bare", "min_disk": 3,
      "min_ram": 512, "protected": True, "os_hidden": True, "visibility": "public",
      "owner": "p1"}, {"a": "1", "b": "two", "é": "ü"}, ["z", "a", "a", "m"]),
])
def test_the_created_record_is_what_a_read_returns(
    registry: ImageRegistry, values: dict[str, object], properties: dict[str, str],
    tags: list[str],
) -> None:
    """create() builds its answer without reading the row back: it must be the same."""
    created = registry.create(values, properties, tags)
    assert registry.get(created.id) == created


@pytest.mark.parametrize("count", [2, 100, 101, 250])
def test_a_page_reads_every_images_own_properties_tags_and_copies(
        registry: ImageRegistry, count: int) -> None:
    """A page's properties, tags and copies are read ``_CHILDREN_BATCH`` images at a time,
    the last batch padded: each record still gets its own, in order, for any page size."""
    viewer = Viewer("p-page", is_admin=True)
    made = {}
    for i in range(count):
        image = registry.create({"name": f"page-{i:03}", "owner": "p-page"},
                                properties={"n": str(i)}, tags=[f"t{i}", "z", "a"])
        registry.transition(image.id, "queued", "saving")
        registry.transition(image.id, "saving", "active",
                            {"size": 3, "location": f"file:///{i}", "store": "s1"})
        registry.add_location(image.id, "s2", f"file:///late/{i}")
        made[image.id] = i
    page = [r for r in registry.list(ImageQuery(viewer=viewer, limit=1000))
            if r.id in made]
    assert len(page) == count
    for record in page:
        i = made[record.id]
        assert record.properties == {"n": str(i)}
        assert record.tags == tuple(sorted(("a", "z", f"t{i}")))
        assert [(c.store, c.location) for c in record.locations] == [
            ("s1", f"file:///{i}"), ("s2", f"file:///late/{i}")]
    one = registry.get(page[0].id)
    assert one == page[0]

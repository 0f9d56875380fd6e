"""The metadefs registry on SQLite, PostgreSQL and MariaDB: contents, visibility, listing
order and seeks, conflicts, all-or-nothing writes, cascades; and the namespace list at
10,000 namespaces is an index seek, not a sort of the table."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from streamd.errors import Conflict, NotFound
from streamd.registry.metadefs import (
    ADMIN,
    MetadefRegistry,
    MetadefViewer,
    NamespaceQuery,
    NewAssociation,
    NewObject,
    namespaces_t,
)
from streamd.registry.models import metadata
from tests.registry.conftest import BACKENDS, FakeClock, migrated_database

METADEF_TABLES = [t for t in reversed(metadata.sorted_tables) if t.name.startswith("metadef")]


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[sa.Engine]:
    with migrated_database(request.param, tmp_path_factory.mktemp(request.param)) as engine:
        yield engine


@pytest.fixture
def engine(database: sa.Engine) -> Iterator[sa.Engine]:
    yield database
    with database.begin() as conn:
        for table in METADEF_TABLES:
            conn.execute(table.delete())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reg(engine: sa.Engine, clock: FakeClock) -> MetadefRegistry:
    return MetadefRegistry(engine, clock=clock)


def make(reg: MetadefRegistry, name: str, **values: object) -> None:
    reg.create_namespace({"namespace": name, **values})


def test_a_namespace_keeps_its_contents(reg: MetadefRegistry) -> None:
    created = reg.create_namespace(
        {"namespace": "N::One", "display_name": "One", "visibility": "public",
         "protected": True, "owner": "p1"},
        resource_types=[NewAssociation("T::Flavor", "one:"),
                        NewAssociation("T::Image", "one_", "image")],
        properties={"cpus": {"title": "CPUs", "type": "integer", "minimum": 1}},
        objects=[NewObject("Obj", "An object", ["a"], {"a": {"title": "A", "type": "string"}})],
        tags=["x", "y"],
    )
    assert created == reg.contents("N::One", ADMIN)
    ns = created.namespace
    assert (ns.namespace, ns.display_name, ns.description, ns.visibility, ns.protected,
            ns.owner) == ("N::One", "One", None, "public", True, "p1")
    assert [(a.name, a.prefix, a.properties_target) for a in ns.resource_types] == [
        ("T::Flavor", "one:", None), ("T::Image", "one_", "image")]
    assert [(p.name, p.schema) for p in created.properties] == [
        ("cpus", {"title": "CPUs", "type": "integer", "minimum": 1})]
    [obj] = created.objects
    assert (obj.name, obj.description, obj.required, obj.properties) == (
        "Obj", "An object", ["a"], {"a": {"title": "A", "type": "string"}})
    assert {t.name for t in created.tags} == {"x", "y"}
    assert [r.name for r in reg.resource_types()] == ["T::Flavor", "T::Image"]


def test_private_namespaces_are_seen_by_their_project_and_admins(reg: MetadefRegistry) -> None:
    make(reg, "N::Private", visibility="private", owner="p1")
    make(reg, "N::Public", visibility="public", owner="p1")
    make(reg, "N::Unowned", visibility="private", owner=None)
    p1, p2 = MetadefViewer("p1"), MetadefViewer("p2")
    assert reg.namespace("N::Private", p1).owner == "p1"
    with pytest.raises(NotFound, match="N::Private"):
        reg.namespace("N::Private", p2)
    with pytest.raises(NotFound):
        reg.properties("N::Private", p2)

    def names(viewer: MetadefViewer) -> set[str]:
        return {ns.namespace for ns in reg.list_namespaces(viewer, NamespaceQuery(limit=100))}

    assert names(p1) == names(ADMIN) == {"N::Private", "N::Public", "N::Unowned"}
    assert names(p2) == {"N::Public", "N::Unowned"}
    assert names(MetadefViewer(None)) == {"N::Public", "N::Unowned"}


def test_listing_order_seeks_and_filters(reg: MetadefRegistry, clock: FakeClock) -> None:
    for i in range(6):
        reg.create_namespace({"namespace": f"N::{i}", "visibility": "public"},
                             resource_types=[NewAssociation("T::Even" if i % 2 == 0
                                                            else "T::Odd")])
        if i % 2:
            clock.advance()  # two per second: ties are broken by id
    everything = [ns.namespace for ns in reg.list_namespaces(ADMIN, NamespaceQuery(limit=10))]
    assert everything == [f"N::{i}" for i in reversed(range(6))]
    pages, marker = [], None
    while True:
        page = reg.list_namespaces(ADMIN, NamespaceQuery(limit=4, sort_dir="asc",
                                                         marker=marker))
        pages.append([ns.namespace for ns in page])
        if len(page) < 4:
            break
        marker = page[-1].namespace
    assert pages == [["N::0", "N::1", "N::2", "N::3"], ["N::4", "N::5"]]
    by_name = reg.list_namespaces(ADMIN, NamespaceQuery(sort_key="namespace", sort_dir="desc",
                                                        marker="N::3", limit=10))
    assert [ns.namespace for ns in by_name] == ["N::2", "N::1", "N::0"]
    odd = reg.list_namespaces(ADMIN, NamespaceQuery(resource_types=("T::Odd", "T::None")))
    assert [ns.namespace for ns in odd] == ["N::5", "N::3", "N::1"]
    assert all(ns.resource_types[0].name == "T::Odd" for ns in odd)
    with pytest.raises(NotFound):
        reg.list_namespaces(ADMIN, NamespaceQuery(marker="N::missing"))


def test_duplicates_conflict_and_change_nothing(reg: MetadefRegistry) -> None:
    make(reg, "N::A", visibility="public")
    with pytest.raises(Conflict, match="already exists"):
        make(reg, "N::A")
    with pytest.raises(Conflict):  # a duplicate inside a new namespace: nothing is made
        reg.create_namespace({"namespace": "N::B"}, tags=["t", "t"])
    with pytest.raises(NotFound):
        reg.namespace("N::B", ADMIN)
    reg.create_property("N::A", ADMIN, "p", {"title": "P", "type": "string"})
    with pytest.raises(Conflict, match="property with name=p"):
        reg.create_property("N::A", ADMIN, "p", {"title": "P", "type": "string"})
    reg.create_object("N::A", ADMIN, NewObject("o"))
    with pytest.raises(Conflict, match="object with name=o"):
        reg.create_object("N::A", ADMIN, NewObject("o"))
    reg.associate("N::A", ADMIN, NewAssociation("T::X"))
    with pytest.raises(Conflict, match="resource-type=T::X"):
        reg.associate("N::A", ADMIN, NewAssociation("T::X", "p_"))
    make(reg, "N::C")
    with pytest.raises(Conflict, match="duplicate"):
        reg.update_namespace("N::C", ADMIN, {"namespace": "N::A"})
    assert reg.namespace("N::C", ADMIN).namespace == "N::C"


def test_tags_replace_or_append_all_or_nothing(reg: MetadefRegistry) -> None:
    make(reg, "N::T")
    reg.create_tags("N::T", ADMIN, ["a", "b"], append=False)
    reg.create_tags("N::T", ADMIN, ["c"], append=True)
    assert {t.name for t in reg.tags("N::T", ADMIN)} == {"a", "b", "c"}
    with pytest.raises(Conflict):
        reg.create_tags("N::T", ADMIN, ["d", "d"], append=False)
    assert {t.name for t in reg.tags("N::T", ADMIN)} == {"a", "b", "c"}
    reg.create_tags("N::T", ADMIN, ["Fast", "fast"], append=False)  # names are exact
    assert {t.name for t in reg.tags("N::T", ADMIN)} == {"Fast", "fast"}
    reg.create_tags("N::T", ADMIN, ["b", "a", "c"], append=True)
    page = reg.tags("N::T", ADMIN, sort_key="name", sort_dir="asc", marker="Fast", limit=2)
    assert [t.name for t in page] == ["a", "b"]  # code point order: "F" < "a"
    assert [t.name for t in reg.tags("N::T", ADMIN, sort_key="name", marker="b")] == [
        "a", "Fast"]
    with pytest.raises(NotFound):
        reg.tags("N::T", ADMIN, marker="nothing")
    assert reg.update_tag("N::T", ADMIN, "fast", "quick").name == "quick"
    with pytest.raises(NotFound):
        reg.tag("N::T", ADMIN, "fast")


def test_renames_and_deletes(reg: MetadefRegistry) -> None:
    make(reg, "N::R")
    reg.create_property("N::R", ADMIN, "p", {"title": "P", "type": "string"})
    renamed = reg.update_property("N::R", ADMIN, "p", "q", {"title": "Q", "type": "integer"})
    assert (renamed.name, renamed.schema) == ("q", {"title": "Q", "type": "integer"})
    reg.create_object("N::R", ADMIN, NewObject("o", required=["x"]))
    updated = reg.update_object("N::R", ADMIN, "o", NewObject("o2", "described"))
    assert (updated.name, updated.description, updated.required) == ("o2", "described", None)
    reg.delete_property("N::R", ADMIN, "q")
    with pytest.raises(NotFound, match="property q"):
        reg.delete_property("N::R", ADMIN, "q")
    reg.associate("N::R", ADMIN, NewAssociation("T::R"))
    reg.dissociate("N::R", ADMIN, "T::R")
    with pytest.raises(NotFound, match="T::R"):
        reg.dissociate("N::R", ADMIN, "T::R")
    assert [r.name for r in reg.resource_types()] == ["T::R"]  # the type stays


def test_deleting_a_namespace_takes_its_contents(reg: MetadefRegistry, engine: sa.Engine
                                                 ) -> None:
    reg.create_namespace({"namespace": "N::D"}, resource_types=[NewAssociation("T::D")],
                         properties={"p": {"title": "P", "type": "string"}},
                         objects=[NewObject("o")], tags=["t"])
    reg.create_namespace({"namespace": "N::Kept"}, resource_types=[NewAssociation("T::K")])
    reg.clear("N::D", ADMIN, "tags")
    assert reg.tags("N::D", ADMIN) == []
    reg.delete_namespace("N::D", ADMIN)
    with engine.connect() as conn:
        counts = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                  for t in METADEF_TABLES}
    assert counts == {"metadef_tags": 0, "metadef_objects": 0, "metadef_properties": 0,
                      "metadef_namespace_resource_types": 1, "metadef_resource_types": 2,
                      "metadef_namespaces": 1}
    assert reg.delete_unused_resource_types() == 1
    assert [r.name for r in reg.resource_types()] == ["T::K"]


# -- 10,000 namespaces -------------------------------------------------------------------------

NAMESPACES = 10_000
PROJECTS = 100


@pytest.fixture(scope="module")
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[str, sa.Engine]]:
    """10,000 namespaces of 100 projects (a tenth public), a few per second, one resource
    type association each."""
    backend = request.param
    t0 = dt.datetime(2024, 1, 1)
    rows = [{"namespace": f"NS::{i:05d}", "visibility": "public" if i % 10 == 0 else "private",
             "protected": False, "owner": f"project-{i % PROJECTS}",
             "created_at": t0 + dt.timedelta(seconds=i // 3),
             "updated_at": t0 + dt.timedelta(seconds=i // 3)} for i in range(NAMESPACES)]
    with migrated_database(backend, Path(tmp_path_factory.mktemp("big"))) as engine:
        with engine.begin() as conn:
            conn.execute(namespaces_t.insert(), rows)
        reg = MetadefRegistry(engine)
        reg.associate("NS::00000", ADMIN, NewAssociation("T::Flavor", "f:"))
        with engine.begin() as conn:
            analyze = {"sqlite": "ANALYZE", "postgresql": "ANALYZE",
                       "mysql": "ANALYZE TABLE metadef_namespaces"}[backend]
            conn.exec_driver_sql(analyze).close()
        yield backend, engine


@pytest.mark.parametrize("big", BACKENDS, indirect=True)
def test_namespace_pages_are_fast_at_10000(big: tuple[str, sa.Engine]) -> None:
    backend, engine = big
    reg = MetadefRegistry(engine)
    viewers = [ADMIN, MetadefViewer("project-7")]
    for viewer in viewers:
        reg.list_namespaces(viewer, NamespaceQuery(limit=25))  # warm the pool and caches
    timings = {}
    for viewer in viewers:
        started = time.perf_counter()
        for _ in range(20):
            page = reg.list_namespaces(viewer, NamespaceQuery(limit=25))
        timings[viewer.is_admin] = (time.perf_counter() - started) / 20
        assert len(page) == 25 and page[0].namespace == "NS::09999" or not viewer.is_admin
        last = reg.list_namespaces(viewer, NamespaceQuery(limit=25, marker=page[-1].namespace))
        assert len(last) == 25
    print(f"\n{backend}: a page of 25 of 10,000 namespaces: admin "
          f"{timings[True] * 1000:.1f} ms, project {timings[False] * 1000:.1f} ms")
    # a sort of 10,000 rows would be tens of ms; a seek is a few
    assert timings[True] < 0.05 and timings[False] < 0.05
    if backend == "sqlite":
        plan(engine)


def plan(engine: sa.Engine) -> None:
    """SQLite's plan of the admin page query reads the created_at index backwards: no sort
    (temp B-tree) of the table for ORDER BY."""
    sent: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        MetadefRegistry(engine).list_namespaces(ADMIN, NamespaceQuery(limit=25))
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    [page] = [s for s in sent if "ORDER BY" in s and "metadef_namespaces.created_at" in s]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + page, (25, 0)).all()
    text = " ".join(str(r[-1]) for r in rows)
    assert "ix_metadef_namespaces_created_at_id" in text and "TEMP B-TREE" not in text, text

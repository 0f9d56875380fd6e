"""The default page query is read off an index on every database, never a sort of the table.

The statement is the one ``ImageRegistry.list`` really sends (captured from the engine),
explained by the database itself (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN
(FORMAT JSON)``, MariaDB ``EXPLAIN``) over 20,000 images of 200 projects after ``ANALYZE``,
so that the planners cost it as they would in production.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from streamd.registry import Filter, ImageQuery, ImageRegistry, Viewer
from streamd.registry.images import images
from streamd.registry.members import members
from tests.registry.conftest import migrated_database

IMAGES = 20_000
PROJECTS = 200


@pytest.fixture(scope="module")
def big(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """20,000 images: 2% public, 1% community, 14% shared (each with one member, accepted,
    pending or rejected), three per created_at second."""
    t0 = dt.datetime(2024, 1, 1)
    rows = [
        {"id": str(uuid.uuid4()), "name": f"image-{i}", "status": "active",
         "visibility": "public" if i % 50 == 0 else "community" if i % 97 == 0
         else "shared" if i % 7 == 0 else "private",
         "owner": f"project-{i % PROJECTS}", "size": i, "min_disk": 0, "min_ram": 0,
         "protected": False, "os_hidden": i % 300 == 0,
         "created_at": t0 + dt.timedelta(seconds=i // 3),
         "updated_at": t0 + dt.timedelta(seconds=i // 3)}
        for i in range(IMAGES)
    ]
    offers = [
        {"image_id": row["id"], "member_id": f"project-{(i * 13) % PROJECTS}",
         "status": ("accepted", "pending", "rejected")[i % 3], "created_at": t0,
         "updated_at": t0}
        for i, row in enumerate(r for r in rows if r["visibility"] == "shared")
    ]
    with migrated_database(backend, tmp_path_factory.mktemp("plans")) as engine:
        with engine.begin() as conn:
            conn.execute(images.insert(), rows)
            conn.execute(members.insert(), offers)
        with engine.begin() as conn:
            analyze = {"sqlite": "ANALYZE", "postgresql": "ANALYZE images, image_members",
                       "mysql": "ANALYZE TABLE images, image_members"}[backend]
            conn.exec_driver_sql(analyze).close()
        yield engine


def page_statement(engine: sa.Engine, query: ImageQuery) -> tuple[str, Any]:
    """The SQL and parameters of the page query that ``list(query)`` sends."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        assert len(ImageRegistry(engine).list(query)) == query.limit
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    [page] = [(s, p) for s, p in sent if "ORDER BY" in s and "LIMIT" in s]
    return page


def explain(engine: sa.Engine, statement: str, parameters: Any) -> Any:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        if engine.dialect.name == "postgresql":
            return conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                        parameters).scalar_one()[0]["Plan"]
        return [r._asdict() for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]


def assert_sqlite_uses_indexes(plan: list[Any], at_marker: bool) -> None:
    """Every read of images is an index walk in the page's order, no temp B-tree beside it,
    or a primary key lookup of a row of the merged page (whose ≤ one page per scope the
    merge may sort)."""
    reads = [row for row in plan if row.detail.split()[:2] in (["SCAN", "images"],
                                                                ["SEARCH", "images"])]
    walks = [r for r in reads if not r.detail.endswith("sqlite_autoindex_images_1 (id=?)")]
    assert walks
    for read in walks:
        assert " USING INDEX ix_images_" in read.detail, read.detail
        if at_marker:  # the walk starts at the marker, not at the top of the index
            assert "created_at<?" in read.detail, read.detail
        beside = [r.detail for r in plan if r.parent == read.parent and r.id != read.id]
        assert not any("TEMP B-TREE" in d for d in beside), (read.detail, beside)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def assert_postgresql_uses_indexes(plan: dict[str, Any], at_marker: bool) -> None:
    """No sequential scan; a sort only of one project's images or of the images offered to
    it, found through an index on owner or member."""
    nodes = list(_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], json.dumps(plan)
    walks = [n for n in nodes if n.get("Index Name", "").startswith("ix_images_")]
    assert walks
    if at_marker:  # the scan starts at the marker, not at the top of the index
        for read in walks:
            assert "created_at <=" in read.get("Index Cond", ""), json.dumps(plan)
    for sort in (n for n in nodes if n["Node Type"] == "Sort"):
        conds = [n.get("Index Cond", "") for n in _nodes(sort)]
        assert any(("owner" in c or "member_id" in c) and "=" in c for c in conds), \
            json.dumps(plan)


def assert_mysql_uses_indexes(plan: list[dict[str, Any]], at_marker: bool) -> None:
    """Every read of images goes through an index, with no filesort (a filesort of the
    derived union, at most one page per scope, is the merge)."""
    reads = [row for row in plan if row["table"] == "images"]
    assert reads
    for read in reads:
        assert read["key"] and read["type"] != "ALL", read
        assert "filesort" not in (read["Extra"] or ""), read
        if read["type"] == "eq_ref" and read["key"] == "PRIMARY":
            continue  # a row of the merged page, joined back by primary key
        if at_marker:  # a range that starts at the marker, not the whole index
            assert read["type"] == "range", read


@pytest.mark.parametrize("viewer", [Viewer("admin-project", is_admin=True),
                                    Viewer(None, is_admin=True), Viewer("project-7")],
                         ids=["admin", "admin-without-project", "owner"])
@pytest.mark.parametrize("deep", [False, True], ids=["first-page", "with-marker"])
def test_default_page_uses_an_index(big: sa.Engine, viewer: Viewer, deep: bool) -> None:
    marker = None
    if deep:  # a visible image about two thirds of the way down the listing
        depth = 13_000 if viewer.is_admin else 300  # a project sees ~500 (own and public)
        marker = ImageRegistry(big).list(ImageQuery(viewer=viewer, limit=depth))[-1].id
    query = ImageQuery(viewer=viewer, marker=marker, limit=25)
    statement, parameters = page_statement(big, query)
    plan = explain(big, statement, parameters)
    {"sqlite": assert_sqlite_uses_indexes, "postgresql": assert_postgresql_uses_indexes,
     "mysql": assert_mysql_uses_indexes}[big.dialect.name](plan, at_marker=deep)


def test_admin_filter_by_owner_uses_the_owner_index(big: sa.Engine) -> None:
    query = ImageQuery(viewer=Viewer("admin-project", is_admin=True), limit=3,
                       filters=(Filter("owner", "eq", "project-9"),))
    statement, parameters = page_statement(big, query)
    plan = explain(big, statement, parameters)
    text = json.dumps(plan, default=str)
    assert "ix_images_owner_created_at_id" in text


@pytest.mark.parametrize("member_status", ["pending", "all"])
def test_images_offered_to_a_project_are_found_through_its_memberships(
    big: sa.Engine, member_status: str
) -> None:
    """``member_status`` pages (and ``visibility=shared``) seek the viewer's memberships."""
    viewer = Viewer("project-7")
    for filters in ((), (Filter("visibility", "eq", "shared"),)):
        query = ImageQuery(viewer=viewer, limit=10, member_status=member_status,
                           filters=filters)
        statement, parameters = page_statement(big, query)
        plan = explain(big, statement, parameters)
        assert "ix_image_members_member_id_status_image_id" in json.dumps(plan, default=str)
        {"sqlite": assert_sqlite_uses_indexes, "postgresql": assert_postgresql_uses_indexes,
         "mysql": assert_mysql_uses_indexes}[big.dialect.name](plan, at_marker=False)

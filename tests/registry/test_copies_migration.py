"""Migration 0005 on every database: an image's location and store become its one copy in
``image_locations``, and going back down keeps the first copy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from streamd.registry import ImageRegistry, StoredCopy, make_engine
from streamd.registry.schema import downgrade, upgrade

T0 = dt.datetime(2024, 1, 1, 12, 0, 0)
# the columns of images at 0004 that these tests write (typed: SQLite keeps datetimes as text
# in SQLAlchemy's format)
IMAGES_0004 = sa.table(
    "images", *(sa.column(c) for c in ("id", "name", "status", "location", "store",
                                       "visibility", "min_disk", "min_ram", "protected",
                                       "os_hidden")),
    sa.column("created_at", sa.DateTime), sa.column("updated_at", sa.DateTime))
COPIES = sa.table("image_locations", sa.column("image_id"), sa.column("store"),
                  sa.column("location"), sa.column("created_at", sa.DateTime))


@pytest.fixture
def at_0004(empty_url: str) -> Iterator[sa.Engine]:
    """A database at 0004 holding three images: one with a location and store, one with a
    location but no store (never written by streamd, but allowed), one with no data."""
    engine = make_engine(empty_url)
    upgrade(engine, "0004")
    base = {"visibility": "private", "min_disk": 0, "min_ram": 0, "protected": False,
            "os_hidden": False, "created_at": T0}
    with engine.begin() as conn:
        conn.execute(IMAGES_0004.insert(), [
            {**base, "id": "with-store", "name": "a", "status": "active",
             "location": "file:///images/a", "store": "local",
             "updated_at": T0 + dt.timedelta(seconds=5)},
            {**base, "id": "no-store", "name": "b", "status": "active",
             "location": "file:///images/b", "store": None, "updated_at": T0},
            {**base, "id": "no-data", "name": "c", "status": "queued", "location": None,
             "store": None, "updated_at": T0},
        ])
        conn.execute(sa.text("INSERT INTO image_tags (image_id, value) VALUES ('with-store', "
                             "'kept')"))
    yield engine
    engine.dispose()


def test_a_location_becomes_one_copy(at_0004: sa.Engine) -> None:
    upgrade(at_0004)
    with at_0004.connect() as conn:
        rows = conn.execute(sa.select(COPIES).order_by(COPIES.c.image_id)).all()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("images")}
    assert [tuple(r) for r in rows] == [
        ("no-store", "file", "file:///images/b", T0),
        ("with-store", "local", "file:///images/a", T0 + dt.timedelta(seconds=5)),
    ]
    assert {"location", "store"}.isdisjoint(columns)
    registry = ImageRegistry(at_0004)
    a = registry.get("with-store")
    assert a.locations == (StoredCopy("local", "file:///images/a"),)
    assert (a.name, a.status, a.tags) == ("a", "active", ("kept",))  # nothing else lost
    assert registry.get("no-store").stores == ("file",)
    assert registry.get("no-data").locations == ()


def test_down_again_keeps_the_first_copy(at_0004: sa.Engine) -> None:
    upgrade(at_0004)
    registry = ImageRegistry(at_0004, clock=lambda: T0 + dt.timedelta(seconds=60))
    registry.add_location("with-store", "swift", "swift://images/a")  # younger: not kept
    downgrade(at_0004, "0004")
    with at_0004.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT i.id, i.location, i.store, t.value FROM images i "
            "LEFT JOIN image_tags t ON t.image_id = i.id ORDER BY i.id")).all()
        tables = set(sa.inspect(conn).get_table_names())
    assert [tuple(r) for r in rows] == [
        ("no-data", None, None, None),
        ("no-store", "file:///images/b", "file", None),
        ("with-store", "file:///images/a", "local", "kept"),
    ]
    assert {"image_locations", "leases"}.isdisjoint(tables)
    upgrade(at_0004)  # and up once more
    assert ImageRegistry(at_0004).get("with-store").stores == ("local",)

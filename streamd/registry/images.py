"""Image metadata: create, find, list, update, delete; status changes only one node can win.

Every method is synchronous and short; the service layer calls them from worker threads.

Listing is keyset pagination: a page is the first ``limit`` rows strictly after the marker
in the sort order, which always ends in ``created_at`` and ``id`` so that the order is total.
The default page (created_at desc, id desc) is read straight off an index on every database:
an admin's from ``ix_images_created_at_id``, anyone else's merged from two index seeks, one
in the viewer's own images and one in the public ones, so the cost of a page does not grow
with the number of images or with how deep the marker is. Images shared with the viewer
(``image_members``) are one more seek, from the viewer's memberships by status.

An image's data may be in several stores (Glance's multi-store): each copy is a row of
``image_locations``, and every record comes back with all of them (``ImageRecord.locations``),
read like its tags, with one more query per page.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from streamd.errors import BadRequest, Conflict, Forbidden, NotFound
from streamd.registry.connection import connect
from streamd.registry.models import image_locations as locations_t
from streamd.registry.models import image_members as members_t
from streamd.registry.models import image_properties as props
from streamd.registry.models import image_tags as tags_t
from streamd.registry.models import images
from streamd.registry.records import (
    CORE_FIELDS,
    GLANCE_SORT_KEYS,
    MEMBERS_VISIBILITY,
    OPEN_VISIBILITIES,
    Filter,
    ImageQuery,
    ImageRecord,
    StoredCopy,
    Viewer,
)

# what a listing may be ordered by: Glance's keys (all the API offers) and five more columns
SORT_KEYS = (*GLANCE_SORT_KEYS, "virtual_size", "visibility", "owner", "min_disk", "min_ram")
FILTER_FIELDS = (
    "id", "name", "status", "visibility", "owner", "container_format", "disk_format", "size",
    "virtual_size", "checksum", "os_hash_value", "protected", "os_hidden", "min_disk",
    "min_ram", "created_at", "updated_at",
)
_INT_FIELDS = ("size", "virtual_size", "min_disk", "min_ram")
_BOOL_FIELDS = ("protected", "os_hidden")
_TIME_FIELDS = ("created_at", "updated_at")
# NULLs sort differently on each database; a sentinel gives one order (and one keyset seek).
_NULL_SENTINEL = {"name": "", "owner": "", "container_format": "", "disk_format": "",
                  "size": -1, "virtual_size": -1}
_OPS = {
    "eq": lambda c, v: c == v,
    "neq": lambda c, v: c != v,
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "in": lambda c, v: c.in_(v),
}
# image columns in ImageRecord's field order: a selected row is the record's arguments
_RECORD_COLUMNS = tuple(images.c[f.name] for f in dataclasses.fields(ImageRecord)
                        if f.name in images.c)
# one image by id, built once: building the select per call (coercing 20 columns, then its
# cache key) was a third of ImageRegistry.get, which every download and range runs
_BY_ID = sa.select(*_RECORD_COLUMNS).where(images.c.id == sa.bindparam("id"))
# a page's properties, tags and copies in one statement, one round trip instead of three
# (the 1 MiB range benchmark reads an image per request): rows of (kind, image_id, a, b)
# with tags in value order and copies oldest first, then by store; ``ids`` expands in each
# branch of the cached statement. The NULL in the first branch is typed: PostgreSQL types a
# UNION column from its first branches, and an untyped NULL there becomes text.
_IDS = sa.bindparam("ids", expanding=True)


def _children_of(match: Callable[[sa.Column[Any]], Any]) -> Any:
    """The union of a page's children, ``match(image_id column)`` choosing the images."""
    return sa.union_all(
        sa.select(sa.literal_column("'p'").label("kind"), props.c.image_id,
                  props.c.name.label("a"), props.c.value.label("b"),
                  sa.cast(sa.null(), sa.DateTime).label("at"))
        .where(match(props.c.image_id)),
        sa.select(sa.literal_column("'t'"), tags_t.c.image_id, tags_t.c.value, sa.null(),
                  sa.null())
        .where(match(tags_t.c.image_id)),
        sa.select(sa.literal_column("'l'"), locations_t.c.image_id, locations_t.c.store,
                  locations_t.c.location, locations_t.c.created_at)
        .where(match(locations_t.c.image_id)),
    ).order_by(sa.literal_column("kind"), sa.literal_column("at"), sa.literal_column("a"))


_CHILDREN_OF = _children_of(lambda column: column.in_(_IDS))
# one image (every download and range reads one): no expanding IN to render per call
_CHILDREN_OF_ONE = _children_of(lambda column: column == sa.bindparam("id"))


# ids per execution of _CHILDREN_OF for a page: SQLite keeps every statement it prepared, per
# connection, by its text, and a page's 1001 ids made a text of 3003 parameters that each of
# the pool's connections kept (~5 MiB in all after a burst of 1000-image pages). Batches of
# this size, the last one padded with a repeated id (IN ignores it), are one text of 300.
_CHILDREN_BATCH = 100


def _batches(ids: list[str]) -> Iterator[list[str]]:
    """``ids`` in batches of ``_CHILDREN_BATCH``, the last one padded."""
    for start in range(0, len(ids), _CHILDREN_BATCH):
        batch = ids[start:start + _CHILDREN_BATCH]
        yield batch + [batch[-1]] * (_CHILDREN_BATCH - len(batch))


def utcnow() -> dt.datetime:
    """Now, naive UTC, whole seconds: what every database stores the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _copy_of(values: Mapping[str, Any]) -> tuple[StoredCopy, ...] | None:
    """The copy that ``values``' ``location`` and ``store`` name: None when they name none
    (the copies stay as they are), ``()`` for ``location: None`` (the image has no data)."""
    if "location" not in values:
        if "store" in values:
            raise ValueError("a store is written with the location of the data in it")
        return None
    location, store = values["location"], values.get("store")
    if location is None:
        return ()
    if not store:
        raise ValueError(f"the copy at {location!r} needs the id of its store")
    return (StoredCopy(store, location),)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _coerce(field: str, value: Any) -> Any:
    """A filter value as the column's type; BadRequest names the field when it is not one."""
    try:
        if field in _TIME_FIELDS:
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value)
            if not isinstance(value, dt.datetime):
                raise TypeError
            return _naive_utc(value)
        if field in _INT_FIELDS:
            if isinstance(value, bool):
                raise TypeError
            return int(value)
        if field in _BOOL_FIELDS:
            if isinstance(value, bool):
                return value
            return {"true": True, "false": False}[str(value).lower()]
        return str(value)
    except (TypeError, ValueError, KeyError):
        kind = ("an ISO 8601 date and time" if field in _TIME_FIELDS else
                "an integer" if field in _INT_FIELDS else
                "true or false" if field in _BOOL_FIELDS else "a string")
        raise BadRequest(f"Invalid value {value!r} for filter {field}: use {kind}") from None


def _full_sort(sort: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The requested sort, checked, then ``created_at`` and ``id`` as Glance appends them.

    The appended keys take the requested direction when all keys share one, else ``desc``.
    """
    for key, direction in sort:
        if key not in SORT_KEYS:
            raise BadRequest(f"Unsupported sort key {key!r}: use one of {', '.join(SORT_KEYS)}")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Unsupported sort direction {direction!r}: use asc or desc")
    full = list(sort)
    directions = {d for _, d in full}
    default = directions.pop() if len(directions) == 1 else "desc"
    for key in ("created_at", "id"):
        if key not in (k for k, _ in full):
            full.append((key, default))
    return full


def _sort_expr(columns: sa.ColumnCollection[str, Any], key: str) -> sa.ColumnElement[Any]:
    col = columns[key]
    if key in _NULL_SENTINEL:
        return sa.func.coalesce(col, _NULL_SENTINEL[key])
    return col


def _order(columns: sa.ColumnCollection[str, Any],
           sort: Sequence[tuple[str, str]]) -> list[sa.ColumnElement[Any]]:
    return [_sort_expr(columns, k).asc() if d == "asc" else _sort_expr(columns, k).desc()
            for k, d in sort]


def _after(marker: ImageRecord, sort: Sequence[tuple[str, str]]) -> sa.ColumnElement[bool]:
    """Keyset condition: rows strictly after the marker in the sort order.

    ``(k1 > v1) OR (k1 = v1 AND k2 > v2) OR …``, and the redundant ``k1 >= v1`` in front of
    it: that conjunct is what lets every database start the index scan at the marker
    instead of filtering its way there from the first row.
    """
    def value(key: str) -> Any:
        v = getattr(marker, key)
        return _NULL_SENTINEL.get(key) if v is None else v

    ors = []
    for i, (key, direction) in enumerate(sort):
        equal = [_sort_expr(images.c, k) == value(k) for k, _ in sort[:i]]
        expr = _sort_expr(images.c, key)
        ors.append(sa.and_(*equal, expr > value(key) if direction == "asc" else
                           expr < value(key)))
    first, direction = sort[0]
    expr = _sort_expr(images.c, first)
    bound = expr >= value(first) if direction == "asc" else expr <= value(first)
    return sa.and_(bound, sa.or_(*ors))


class ImageRegistry:
    """The images tables behind one engine. ``clock`` gives created_at/updated_at."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], dt.datetime] = utcnow, *,
                 loop_engine: sa.Engine | None = None) -> None:
        """``loop_engine``: where ``get_in_loop`` reads (``schema.make_loop_engine``)."""
        self.engine = engine
        self.clock = clock
        self.loop_engine = loop_engine

    @contextmanager
    def _connection(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection (``write``: a transaction); see ``streamd.registry.connection``."""
        with connect(self.engine, write=write) as conn:
            yield conn

    # -- reading -----------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord:
        with self._connection() as conn:
            return self._get(conn, image_id)

    def _get(self, conn: sa.Connection, image_id: str) -> ImageRecord:
        row = conn.execute(_BY_ID, {"id": image_id}).first()
        if row is None:
            raise NotFound(f"No image found with ID {image_id}")
        return self._records(conn, [row])[0]

    def get_in_loop(self, image_id: str) -> ImageRecord | None:
        """``get`` without waiting, for the event loop: the record, NotFound, or None when
        it cannot be read here and now (no loop engine; the database locked, or any other
        error, which ``get`` in a worker thread meets and reports the usual way)."""
        if self.loop_engine is None:
            return None
        try:
            with self.loop_engine.connect() as conn:
                return self._get(conn, image_id)
        except sa.exc.SQLAlchemyError:
            return None

    def list(self, query: ImageQuery) -> list[ImageRecord]:
        """One page of images in the query's order, after the marker, visible to the viewer."""
        sort = _full_sort(query.sort)
        if query.limit < 0:
            raise BadRequest(f"Invalid limit {query.limit}: use 0 or more")
        conds = self._conditions(query)
        scopes = self._scopes(query)
        with self._connection() as conn:
            if query.marker is not None:
                marker_row = conn.execute(_BY_ID, {"id": query.marker}).first()
                marker = None if marker_row is None else ImageRecord(*marker_row)
                if marker is None or not self._visible(conn, marker, query.viewer):
                    raise BadRequest(f"Invalid marker {query.marker}: no such image is visible")
                conds.append(_after(marker, sort))
            if not scopes:
                return []
            order = _order(images.c, sort)
            if len(scopes) == 1:
                stmt = sa.select(*_RECORD_COLUMNS).where(*conds, scopes[0]).order_by(*order)
            else:
                # one seek per scope, each ordered and limited by its own index; the merge
                # carries only the sort keys (cheap to build and to move) and joins the page's
                # rows back by primary key
                keys = [images.c[k] for k in dict(sort)]
                merged = sa.union_all(*(
                    sa.select(sa.select(*keys).where(*conds, scope).order_by(*order)
                              .limit(query.limit).subquery())
                    for scope in scopes
                )).subquery()
                stmt = (sa.select(*_RECORD_COLUMNS).join(merged, merged.c.id == images.c.id)
                        .order_by(*_order(merged.c, sort)))
            rows = conn.execute(stmt.limit(query.limit)).all()
            return self._records(conn, rows)

    def _visible(self, conn: sa.Connection, image: ImageRecord, viewer: Viewer) -> bool:
        """May ``viewer`` see this image at all (a member: whatever its answer)?"""
        is_member = viewer.needs_membership(image) and conn.execute(
            sa.select(members_t.c.status).where(
                members_t.c.image_id == image.id, members_t.c.member_id == viewer.project_id,
            )).first() is not None
        return viewer.sees(image, is_member)

    def _conditions(self, query: ImageQuery) -> list[sa.ColumnElement[bool]]:
        """The query's filters, tags and properties; hidden images unless os_hidden is asked."""
        conds: list[sa.ColumnElement[bool]] = []
        for f in query.filters:
            if f.field not in FILTER_FIELDS or f.op not in _OPS:
                raise BadRequest(
                    f"Unsupported filter {f.field}:{f.op}: fields are {', '.join(FILTER_FIELDS)}"
                    f", operators {', '.join(_OPS)}"
                )
            if f.field == "visibility" and f.value == "all":
                continue
            if f.op == "in":
                values = [f.value] if isinstance(f.value, str) else f.value
                value: Any = [_coerce(f.field, v) for v in values]  # type: ignore[union-attr]
            else:
                value = _coerce(f.field, f.value)
            conds.append(_OPS[f.op](images.c[f.field], value))
        if not any(f.field == "os_hidden" for f in query.filters):
            conds.append(images.c.os_hidden == sa.false())
        for tag in query.tags:
            conds.append(sa.exists().where(tags_t.c.image_id == images.c.id,
                                           tags_t.c.value == tag))
        for name, value in query.properties:
            conds.append(sa.exists().where(props.c.image_id == images.c.id,
                                           props.c.name == name, props.c.value == value))
        return conds

    def _scopes(self, query: ImageQuery) -> list[sa.ColumnElement[bool]]:
        """Disjoint sets of images the viewer may list; a page is merged from one seek in each.

        ``Viewer.sees`` in SQL, narrowed as Glance narrows listings: without a visibility
        filter, community images are listed only to their owner; with one (``all``
        included) they are listed to everyone. Admins see the rest of every project's
        images; others their own plus the public (and asked-for community) images, plus the
        ``shared`` images offered to them whose member status is the query's
        ``member_status`` (``accepted`` unless asked; ``all``: any). An image without an
        owner is listed by its visibility, as another project's.
        """
        viewer = query.viewer
        asked = [f for f in query.filters if f.field == "visibility"]
        own = images.c.owner == viewer.project_id
        if viewer.is_admin:
            if asked:
                return [sa.true()]
            # not ``visibility != community OR own``: MariaDB answers an OR of two indexed
            # columns with an index merge and a sort of the whole table
            scopes = [images.c.visibility != "community"]
            if viewer.project_id is not None:
                scopes.append(sa.and_(images.c.visibility == "community", own))
            return scopes
        others: Iterable[str] = OPEN_VISIBILITIES if asked else ("public",)
        shared = True
        for f in asked:
            if f.op == "eq" and f.value != "all":
                others = [v for v in others if v == f.value]
                shared = shared and f.value == MEMBERS_VISIBILITY
        scopes = []
        if viewer.project_id is not None:
            scopes.append(own)
            not_own = sa.or_(images.c.owner != viewer.project_id, images.c.owner.is_(None))
            scopes += [sa.and_(images.c.visibility == v, not_own) for v in others]
            if shared:
                scopes.append(sa.and_(images.c.visibility == MEMBERS_VISIBILITY, not_own,
                                      images.c.id.in_(self._offered(query))))
        else:
            scopes += [images.c.visibility == v for v in others]
        return scopes

    def _offered(self, query: ImageQuery) -> sa.Select[Any]:
        """Ids of the images offered to the viewer with the asked member status: a seek in
        ``ix_image_members_member_id_status_image_id``."""
        offered = sa.select(members_t.c.image_id).where(
            members_t.c.member_id == query.viewer.project_id)
        if query.member_status != "all":
            offered = offered.where(members_t.c.status == query.member_status)
        return offered

    def _records(self, conn: sa.Connection, rows: Sequence[Any]) -> list[ImageRecord]:
        ids = [r.id for r in rows]
        prop_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        tag_map: dict[str, list[str]] = {i: [] for i in ids}
        copy_map: dict[str, list[StoredCopy]] = {i: [] for i in ids}
        results = ([conn.execute(_CHILDREN_OF_ONE, {"id": ids[0]})] if len(ids) == 1 else
                   (conn.execute(_CHILDREN_OF, {"ids": batch}) for batch in _batches(ids)))
        for result in results:
            for kind, image_id, a, b, _ in result:
                if kind == "p":
                    prop_map[image_id][a] = b
                elif kind == "t":
                    tag_map[image_id].append(a)
                else:
                    copy_map[image_id].append(StoredCopy(a, b))
        return [ImageRecord(*r, properties=prop_map[r.id], tags=tuple(tag_map[r.id]),
                            locations=tuple(copy_map[r.id]))
                for r in rows]

    # -- writing -----------------------------------------------------------------------------

    def create(
        self,
        values: Mapping[str, Any],
        properties: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        image_id: str | None = None,
    ) -> ImageRecord:
        """A new image; ``values`` may carry the ``location``/``store`` of its first copy."""
        now = self.clock()
        copies = _copy_of(values) or ()
        row = {
            "min_disk": 0, "min_ram": 0, "protected": False, "os_hidden": False,
            "status": "queued", "visibility": "shared",
            **{k: v for k, v in values.items() if k in CORE_FIELDS},
            "id": image_id or str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._connection(write=True) as conn:
                conn.execute(images.insert().values(**row))
                if properties:
                    conn.execute(props.insert(), [
                        {"image_id": row["id"], "name": k, "value": v}
                        for k, v in properties.items()
                    ])
                unique_tags = sorted(set(tags))
                if unique_tags:
                    conn.execute(tags_t.insert(), [
                        {"image_id": row["id"], "value": t} for t in unique_tags
                    ])
                self._write_copies(conn, row["id"], copies, now)
        except IntegrityError:
            raise Conflict(f"An image with identifier {row['id']} already exists") from None
        # what was stored, without reading it back (3 queries, a third of a create's
        # database time): every column is in ``row`` or NULL, and the clock gives whole
        # seconds, which every database stores as they are
        return ImageRecord(
            *(row.get(column.name) for column in _RECORD_COLUMNS),
            properties=dict(properties or {}),
            tags=tuple(unique_tags),
            locations=copies,
        )

    def update(
        self,
        image_id: str,
        values: Mapping[str, Any] | None = None,
        set_properties: Mapping[str, str] | None = None,
        remove_properties: Iterable[str] = (),
        tags: Iterable[str] | None = None,
        expected_status: Iterable[str] | None = None,
    ) -> ImageRecord:
        """Apply one change atomically; with ``expected_status`` only from those statuses.

        ``location`` and ``store`` in ``values`` record where the data just written is:
        that copy replaces every other one (an upload is the image's first copy);
        ``location: None`` leaves the image without any.
        """
        copies = _copy_of(values or {})
        values = {k: v for k, v in (values or {}).items() if k in CORE_FIELDS}
        now = self.clock()
        with self._connection(write=True) as conn:
            stmt = images.update().where(images.c.id == image_id)
            if expected_status is not None:
                expected_status = list(expected_status)
                stmt = stmt.where(images.c.status.in_(expected_status))
            result = conn.execute(stmt.values(**values, updated_at=now))
            if result.rowcount == 0:
                self._raise_missing_or_conflict(conn, image_id, expected_status)
            if copies is not None:
                conn.execute(locations_t.delete().where(locations_t.c.image_id == image_id))
                self._write_copies(conn, image_id, copies, now)
            removed = list(remove_properties)
            if removed:
                conn.execute(props.delete().where(props.c.image_id == image_id,
                                                  props.c.name.in_(removed)))
            if set_properties:
                conn.execute(props.delete().where(props.c.image_id == image_id,
                                                  props.c.name.in_(list(set_properties))))
                conn.execute(props.insert(), [
                    {"image_id": image_id, "name": k, "value": v}
                    for k, v in set_properties.items()
                ])
            if tags is not None:
                conn.execute(tags_t.delete().where(tags_t.c.image_id == image_id))
                unique = sorted(set(tags))
                if unique:
                    conn.execute(tags_t.insert(), [
                        {"image_id": image_id, "value": t} for t in unique
                    ])
        return self.get(image_id)

    def transition(
        self,
        image_id: str,
        expected: str | Iterable[str],
        new_status: str,
        values: Mapping[str, Any] | None = None,
    ) -> ImageRecord:
        """``UPDATE … SET status = new WHERE id = … AND status IN expected``: one winner only."""
        expected = (expected,) if isinstance(expected, str) else tuple(expected)
        return self.update(image_id, {**(values or {}), "status": new_status},
                           expected_status=expected)

    def _write_copies(self, conn: sa.Connection, image_id: str,
                      copies: Sequence[StoredCopy], now: dt.datetime) -> None:
        if copies:
            conn.execute(locations_t.insert(), [
                {"image_id": image_id, "store": c.store, "location": c.location,
                 "created_at": now} for c in copies
            ])

    # -- copies of the data (multi-store) ----------------------------------------------------

    def add_location(self, image_id: str, store: str, location: str) -> ImageRecord:
        """Record one more copy of an active image's data, in a store that has none yet.

        Conflict when the image is not active (its data is not complete anywhere, or it is
        deactivated) or already has a copy in ``store``; the image row is updated in the
        same transaction, so this waits for, or fails after, a concurrent status change.
        The copy comes after the existing ones (``locations`` order, which downloads try
        first): its ``created_at`` is a second past theirs when the clock has not moved on,
        since times are kept in whole seconds.
        """
        now = self.clock()
        try:
            with self._connection(write=True) as conn:
                result = conn.execute(
                    images.update().where(images.c.id == image_id, images.c.status == "active")
                    .values(updated_at=now))
                if result.rowcount == 0:
                    self._raise_missing_or_conflict(conn, image_id, ("active",))
                latest = conn.execute(sa.select(sa.func.max(locations_t.c.created_at))
                                      .where(locations_t.c.image_id == image_id)).scalar()
                if latest is not None and latest >= now:
                    now = latest + dt.timedelta(seconds=1)
                self._write_copies(conn, image_id, [StoredCopy(store, location)], now)
        except IntegrityError:
            raise Conflict(f"Image {image_id} already has a copy in store {store}") from None
        return self.get(image_id)

    def remove_location(
        self, image_id: str, store: str, expected_status: Iterable[str] | None = None
    ) -> ImageRecord:
        """Forget the copy in ``store`` (its data is the caller's to delete) and say what is left.

        NotFound when the image or its copy in ``store`` is missing; Forbidden for the last
        copy, as Glance answers ``DELETE /v2/stores/{store}/{image}`` (delete the image
        instead); with ``expected_status`` Conflict from any other status. The image row is
        locked first, so two removals of an image's last two copies cannot both succeed.
        """
        with self._connection(write=True) as conn:
            stmt = images.update().where(images.c.id == image_id)
            if expected_status is not None:
                expected_status = list(expected_status)
                stmt = stmt.where(images.c.status.in_(expected_status))
            if conn.execute(stmt.values(updated_at=self.clock())).rowcount == 0:
                self._raise_missing_or_conflict(conn, image_id, expected_status)
            stores = conn.execute(
                sa.select(locations_t.c.store).where(locations_t.c.image_id == image_id)
                .with_for_update()
            ).scalars().all()
            if store not in stores:
                raise NotFound(f"Image {image_id} has no data in store {store}")
            if len(stores) == 1:
                raise Forbidden(
                    f"Store {store} holds the only copy of image {image_id}'s data; it cannot "
                    "be removed from there: delete the image to remove all its data"
                )
            conn.execute(locations_t.delete().where(locations_t.c.image_id == image_id,
                                                    locations_t.c.store == store))
        return self.get(image_id)

    def images_in_store(
        self, store: str, limit: int = 100, marker: str | None = None
    ) -> list[tuple[str, str]]:
        """``(image_id, location)`` of the copies in ``store``, by image id after ``marker``:
        a page of a sweep over one store (an index seek, whatever the image count)."""
        stmt = (sa.select(locations_t.c.image_id, locations_t.c.location)
                .where(locations_t.c.store == store)
                .order_by(locations_t.c.image_id).limit(limit))
        if marker is not None:
            stmt = stmt.where(locations_t.c.image_id > marker)
        with self._connection() as conn:
            return [(r.image_id, r.location) for r in conn.execute(stmt)]

    def _raise_missing_or_conflict(
        self, conn: sa.Connection, image_id: str, expected: Iterable[str] | None
    ) -> None:
        status = conn.execute(
            sa.select(images.c.status).where(images.c.id == image_id)
        ).scalar_one_or_none()
        if status is None:
            raise NotFound(f"No image found with ID {image_id}")
        raise Conflict(
            f"Image {image_id} is {status}; this operation needs it to be "
            f"{' or '.join(expected or ())}"
        )

    def add_tag(self, image_id: str, tag: str) -> None:
        with self._connection(write=True) as conn:
            # the UPDATE locks the image row: concurrent PUTs of one tag queue up behind it
            self._touch(conn, image_id)
            exists = conn.execute(sa.select(tags_t.c.value).where(
                tags_t.c.image_id == image_id, tags_t.c.value == tag)).first()
            if exists is None:
                conn.execute(tags_t.insert().values(image_id=image_id, value=tag))

    def remove_tag(self, image_id: str, tag: str) -> None:
        with self._connection(write=True) as conn:
            self._touch(conn, image_id)
            result = conn.execute(tags_t.delete().where(
                tags_t.c.image_id == image_id, tags_t.c.value == tag))
            if result.rowcount == 0:
                raise NotFound(f"Tag {tag} not found on image {image_id}")

    def _touch(self, conn: sa.Connection, image_id: str) -> None:
        result = conn.execute(images.update().where(images.c.id == image_id)
                              .values(updated_at=self.clock()))
        if result.rowcount == 0:
            raise NotFound(f"No image found with ID {image_id}")

    def delete(self, image_id: str) -> ImageRecord:
        """Remove the image's row (properties, tags, copies cascade); returns what it was."""
        record = self.get(image_id)
        with self._connection(write=True) as conn:
            conn.execute(locations_t.delete().where(locations_t.c.image_id == image_id))
            conn.execute(props.delete().where(props.c.image_id == image_id))
            conn.execute(tags_t.delete().where(tags_t.c.image_id == image_id))
            conn.execute(members_t.delete().where(members_t.c.image_id == image_id))
            result = conn.execute(images.delete().where(images.c.id == image_id))
            if result.rowcount == 0:
                raise NotFound(f"No image found with ID {image_id}")
        return record

    def count(self) -> int:
        with self._connection() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(images)).scalar_one()


__all__ = ["ImageRegistry", "ImageQuery", "ImageRecord", "Viewer", "Filter", "utcnow"]

"""Image metadata: create, find, list, update, delete; status changes only one node can win.

Every method is synchronous and short; the service layer calls them from worker threads.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.registry.models import Image, ImageProperty, ImageTag
from streamd.registry.records import CORE_FIELDS, Filter, ImageQuery, ImageRecord, Viewer

images = Image.__table__
props = ImageProperty.__table__
tags_t = ImageTag.__table__

SORT_KEYS = (
    "name", "status", "container_format", "disk_format", "size", "virtual_size", "id",
    "created_at", "updated_at", "visibility", "owner", "min_disk", "min_ram",
)
FILTER_FIELDS = (
    "id", "name", "status", "visibility", "owner", "container_format", "disk_format", "size",
    "virtual_size", "checksum", "os_hash_value", "protected", "os_hidden", "min_disk",
    "min_ram", "created_at", "updated_at",
)
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
    "in": lambda c, v: c.in_(list(v)),
}


def utcnow() -> dt.datetime:
    """Now, naive UTC, whole seconds: what every database stores the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _sort_expr(key: str) -> sa.ColumnElement[Any]:
    col = images.c[key]
    if key in _NULL_SENTINEL:
        return sa.func.coalesce(col, _NULL_SENTINEL[key])
    return col


def _sort_value(record: ImageRecord, key: str) -> Any:
    value = getattr(record, key)
    return _NULL_SENTINEL.get(key) if value is None else value


class ImageRegistry:
    """The images tables behind one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- reading -----------------------------------------------------------------------------

    def get(self, image_id: str) -> ImageRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(images).where(images.c.id == image_id)).first()
            if row is None:
                raise NotFound(f"No image found with ID {image_id}")
            return self._records(conn, [row])[0]

    def list(self, query: ImageQuery) -> list[ImageRecord]:
        """One page of images in the query's order, after the marker, visible to the viewer."""
        for key, direction in query.sort:
            if key not in SORT_KEYS:
                raise BadRequest(f"Unsupported sort key {key!r}: use one of {', '.join(SORT_KEYS)}")
            if direction not in ("asc", "desc"):
                raise BadRequest(f"Unsupported sort direction {direction!r}: use asc or desc")
        sort = list(query.sort)
        if "id" not in (k for k, _ in sort):
            sort.append(("id", sort[-1][1] if sort else "desc"))
        stmt = sa.select(images).where(*self._conditions(query))
        with self.engine.connect() as conn:
            if query.marker is not None:
                marker_row = conn.execute(
                    sa.select(images).where(images.c.id == query.marker)
                ).first()
                if marker_row is None or not self._visible(marker_row, query.viewer):
                    raise BadRequest(f"Invalid marker {query.marker}: no such image is visible")
                stmt = stmt.where(self._after(marker_row, sort))
            order = [
                _sort_expr(k).asc() if d == "asc" else _sort_expr(k).desc() for k, d in sort
            ]
            rows = conn.execute(stmt.order_by(*order).limit(query.limit)).all()
            return self._records(conn, rows)

    def _visible(self, row: Any, viewer: Viewer) -> bool:
        return viewer.is_admin or row.owner == viewer.project_id or row.visibility in (
            "public", "community")

    def _conditions(self, query: ImageQuery) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        visibility_asked = None
        hidden_asked = False
        for f in query.filters:
            if f.field not in FILTER_FIELDS or f.op not in _OPS:
                raise BadRequest(f"Unsupported filter {f.field}={f.op}:")
            conds.append(_OPS[f.op](images.c[f.field], f.value))
            if f.field == "visibility":
                visibility_asked = f.value
            if f.field == "os_hidden":
                hidden_asked = True
        viewer = query.viewer
        if visibility_asked is None and not viewer.is_admin:
            # Glance's default listing: own images and public ones; community only when asked
            conds.append(sa.or_(images.c.owner == viewer.project_id,
                                images.c.visibility == "public"))
        elif not viewer.is_admin:
            conds.append(sa.or_(images.c.owner == viewer.project_id,
                                images.c.visibility.in_(("public", "community"))))
        if not hidden_asked:
            conds.append(images.c.os_hidden == sa.false())
        for tag in query.tags:
            conds.append(sa.exists().where(tags_t.c.image_id == images.c.id,
                                           tags_t.c.value == tag))
        for name, value in query.properties:
            conds.append(sa.exists().where(props.c.image_id == images.c.id,
                                           props.c.name == name, props.c.value == value))
        return conds

    def _after(self, marker: Any, sort: Sequence[tuple[str, str]]) -> sa.ColumnElement[bool]:
        """Keyset condition: rows strictly after the marker in the sort order."""
        record = self._row_record(marker, {}, ())
        ors = []
        for i, (key, direction) in enumerate(sort):
            equal = [_sort_expr(k) == _sort_value(record, k) for k, _ in sort[:i]]
            expr, value = _sort_expr(key), _sort_value(record, key)
            beyond = expr > value if direction == "asc" else expr < value
            ors.append(sa.and_(*equal, beyond))
        return sa.or_(*ors)

    def _records(self, conn: sa.Connection, rows: Sequence[Any]) -> list[ImageRecord]:
        ids = [r.id for r in rows]
        prop_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        tag_map: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for p in conn.execute(sa.select(props).where(props.c.image_id.in_(ids))):
                prop_map[p.image_id][p.name] = p.value
            for t in conn.execute(
                sa.select(tags_t).where(tags_t.c.image_id.in_(ids)).order_by(tags_t.c.value)
            ):
                tag_map[t.image_id].append(t.value)
        return [self._row_record(r, prop_map[r.id], tuple(tag_map[r.id])) for r in rows]

    @staticmethod
    def _row_record(row: Any, properties: dict[str, str], tags: tuple[str, ...]) -> ImageRecord:
        m = row._mapping
        return ImageRecord(
            **{k: m[k] for k in ("id", "created_at", "updated_at", *CORE_FIELDS)},
            properties=properties,
            tags=tags,
        )

    # -- writing -----------------------------------------------------------------------------

    def create(
        self,
        values: Mapping[str, Any],
        properties: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        image_id: str | None = None,
    ) -> ImageRecord:
        now = utcnow()
        row = {
            "min_disk": 0, "min_ram": 0, "protected": False, "os_hidden": False,
            "status": "queued", "visibility": "shared",
            **{k: v for k, v in values.items() if k in CORE_FIELDS},
            "id": image_id or str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
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
        except IntegrityError:
            raise Conflict(f"An image with identifier {row['id']} already exists") from None
        return self.get(row["id"])

    def update(
        self,
        image_id: str,
        values: Mapping[str, Any] | None = None,
        set_properties: Mapping[str, str] | None = None,
        remove_properties: Iterable[str] = (),
        tags: Iterable[str] | None = None,
        expected_status: Iterable[str] | None = None,
    ) -> ImageRecord:
        """Apply one change atomically; with ``expected_status`` only from those statuses."""
        values = {k: v for k, v in (values or {}).items() if k in CORE_FIELDS}
        with self.engine.begin() as conn:
            stmt = images.update().where(images.c.id == image_id)
            if expected_status is not None:
                stmt = stmt.where(images.c.status.in_(list(expected_status)))
            result = conn.execute(stmt.values(**values, updated_at=utcnow()))
            if result.rowcount == 0:
                self._raise_missing_or_conflict(conn, image_id, expected_status)
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
        with self.engine.begin() as conn:
            self._touch(conn, image_id)
            exists = conn.execute(sa.select(tags_t.c.value).where(
                tags_t.c.image_id == image_id, tags_t.c.value == tag)).first()
            if exists is None:
                try:
                    conn.execute(tags_t.insert().values(image_id=image_id, value=tag))
                except IntegrityError:  # a concurrent PUT of the same tag: same outcome
                    pass

    def remove_tag(self, image_id: str, tag: str) -> None:
        with self.engine.begin() as conn:
            self._touch(conn, image_id)
            result = conn.execute(tags_t.delete().where(
                tags_t.c.image_id == image_id, tags_t.c.value == tag))
            if result.rowcount == 0:
                raise NotFound(f"Tag {tag} not found on image {image_id}")

    def _touch(self, conn: sa.Connection, image_id: str) -> None:
        result = conn.execute(images.update().where(images.c.id == image_id)
                              .values(updated_at=utcnow()))
        if result.rowcount == 0:
            raise NotFound(f"No image found with ID {image_id}")

    def delete(self, image_id: str) -> ImageRecord:
        """Remove the image's row (properties and tags cascade); returns what it was."""
        record = self.get(image_id)
        with self.engine.begin() as conn:
            conn.execute(props.delete().where(props.c.image_id == image_id))
            conn.execute(tags_t.delete().where(tags_t.c.image_id == image_id))
            result = conn.execute(images.delete().where(images.c.id == image_id))
            if result.rowcount == 0:
                raise NotFound(f"No image found with ID {image_id}")
        return record

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(images)).scalar_one()


__all__ = ["ImageRegistry", "ImageQuery", "ImageRecord", "Viewer", "Filter", "utcnow"]

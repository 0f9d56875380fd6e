"""Metadata definitions (Glance's metadefs): namespaces and what they define.

A namespace holds property definitions (JSON-schema fragments), objects (named groups of
properties), tags, and the resource types it applies to, each with the prefix its
properties take there. The API names everything by name; rows are joined by integer ids.

Who may see a namespace is stated here once (``MetadefViewer``), because the listing applies
it in SQL: admins see all, everyone sees ``public`` namespaces and namespaces without an
owner, a project sees its own. A namespace a caller may not see does not exist for them
(NotFound). Who may *change* what (admins; nothing of a ``protected`` namespace is deleted)
is the service layer's business (``streamd.service.metadefs``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.registry.connection import connect
from streamd.registry.images import utcnow
from streamd.registry.models import metadef_namespace_resource_types as associations_t
from streamd.registry.models import metadef_namespaces as namespaces_t
from streamd.registry.models import metadef_objects as objects_t
from streamd.registry.models import metadef_properties as properties_t
from streamd.registry.models import metadef_resource_types as resource_types_t
from streamd.registry.models import metadef_tags as tags_t

NAMESPACE_SORT_KEYS = ("created_at", "updated_at", "namespace", "display_name", "visibility",
                       "owner", "protected", "id")
TAG_SORT_KEYS = ("created_at", "updated_at", "name", "id")
# the namespace columns a caller writes (create, update)
NAMESPACE_FIELDS = ("namespace", "display_name", "description", "visibility", "protected",
                    "owner")
KINDS = ("objects", "properties", "tags")


@dataclass(frozen=True)
class MetadefViewer:
    """Who is looking at namespaces: a project (or none) and whether it is an admin."""

    project_id: str | None
    is_admin: bool = False

    def sees(self, owner: str | None, visibility: str) -> bool:
        return (self.is_admin or owner is None or visibility == "public"
                or (self.project_id is not None and owner == self.project_id))

    def scope(self) -> sa.ColumnElement[bool]:
        """``sees`` in SQL, over metadef_namespaces."""
        if self.is_admin:
            return sa.true()
        seen = [namespaces_t.c.visibility == "public", namespaces_t.c.owner.is_(None)]
        if self.project_id is not None:
            seen.append(namespaces_t.c.owner == self.project_id)
        return sa.or_(*seen)


ADMIN = MetadefViewer(project_id=None, is_admin=True)


@dataclass(frozen=True)
class Association:
    """A namespace applies to resource type ``name``; its properties are prefixed there."""

    name: str
    prefix: str | None
    properties_target: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class NamespaceRecord:
    id: int
    namespace: str
    display_name: str | None
    description: str | None
    visibility: str
    protected: bool
    owner: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    resource_types: tuple[Association, ...] = ()


@dataclass(frozen=True)
class PropertyRecord:
    """``schema``: the JSON-schema fragment as stored (``name`` in it when it was sent)."""

    name: str
    schema: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ObjectRecord:
    name: str
    description: str | None
    required: list[str] | None
    properties: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class TagRecord:
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ResourceTypeRecord:
    name: str
    protected: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class NamespaceContents:
    """A namespace with everything it defines (show, export)."""

    namespace: NamespaceRecord
    properties: list[PropertyRecord] = field(default_factory=list)
    objects: list[ObjectRecord] = field(default_factory=list)
    tags: list[TagRecord] = field(default_factory=list)


@dataclass(frozen=True)
class NamespaceQuery:
    """One page of namespaces: ``marker`` is a namespace name, as Glance's."""

    visibility: str | None = None
    resource_types: tuple[str, ...] = ()
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    marker: str | None = None
    limit: int = 25


@dataclass(frozen=True)
class NewObject:
    name: str
    description: str | None = None
    required: list[str] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewAssociation:
    name: str
    prefix: str | None = None
    properties_target: str | None = None


_NS_COLUMNS = tuple(namespaces_t.c[name] for name in (
    "id", "namespace", "display_name", "description", "visibility", "protected", "owner",
    "created_at", "updated_at"))


def _namespace_missing(name: str) -> NotFound:
    return NotFound(f"Metadata definition namespace={name} was not found.")


def _property(row: Any) -> PropertyRecord:
    return PropertyRecord(row.name, json.loads(row.json_schema), row.created_at, row.updated_at)


def _object(row: Any) -> ObjectRecord:
    return ObjectRecord(row.name, row.description,
                        None if row.required is None else json.loads(row.required),
                        json.loads(row.json_schema), row.created_at, row.updated_at)


def _tag(row: Any) -> TagRecord:
    return TagRecord(row.name, row.created_at, row.updated_at)


class MetadefRegistry:
    """The metadef_* tables behind one engine. ``clock`` gives created_at/updated_at."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # -- namespaces ------------------------------------------------------------------------

    def _row(self, conn: sa.Connection, name: str, viewer: MetadefViewer) -> Any:
        row = conn.execute(sa.select(*_NS_COLUMNS)
                           .where(namespaces_t.c.namespace == name)).first()
        if row is None or not viewer.sees(row.owner, row.visibility):
            raise _namespace_missing(name)
        return row

    def _associations(self, conn: sa.Connection, ids: Sequence[int]
                      ) -> dict[int, list[Association]]:
        found: dict[int, list[Association]] = {i: [] for i in ids}
        if not ids:
            return found
        rows = conn.execute(
            sa.select(associations_t.c.namespace_id, resource_types_t.c.name,
                      associations_t.c.prefix, associations_t.c.properties_target,
                      associations_t.c.created_at, associations_t.c.updated_at)
            .join(resource_types_t, resource_types_t.c.id == associations_t.c.resource_type_id)
            .where(associations_t.c.namespace_id.in_(ids))
            .order_by(associations_t.c.id))
        for row in rows:
            found[row.namespace_id].append(Association(*row[1:]))
        return found

    def _record(self, conn: sa.Connection, row: Any) -> NamespaceRecord:
        return NamespaceRecord(*row, resource_types=tuple(
            self._associations(conn, [row.id])[row.id]))

    def namespace(self, name: str, viewer: MetadefViewer) -> NamespaceRecord:
        with connect(self.engine) as conn:
            return self._record(conn, self._row(conn, name, viewer))

    def contents(self, name: str, viewer: MetadefViewer) -> NamespaceContents:
        """The namespace and all it defines, read in one transaction."""
        with connect(self.engine) as conn:
            row = self._row(conn, name, viewer)
            return NamespaceContents(
                self._record(conn, row),
                properties=self._properties(conn, row.id),
                objects=self._objects(conn, row.id),
                tags=self._tags(conn, row.id),
            )

    def list_namespaces(self, viewer: MetadefViewer, query: NamespaceQuery
                        ) -> list[NamespaceRecord]:
        """One page, in ``sort_key`` order then (created_at, id), all in ``sort_dir``.

        The marker is a namespace the viewer sees (NotFound otherwise, as Glance)."""
        if query.sort_key not in NAMESPACE_SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {query.sort_key}. Use one of "
                             f"{', '.join(NAMESPACE_SORT_KEYS)}.")
        keys = [namespaces_t.c[k] for k in dict.fromkeys((query.sort_key, "created_at", "id"))]
        conds: list[sa.ColumnElement[bool]] = [viewer.scope()]
        if query.visibility is not None:
            conds.append(namespaces_t.c.visibility == query.visibility)
        if query.resource_types:
            conds.append(namespaces_t.c.id.in_(
                sa.select(associations_t.c.namespace_id)
                .join(resource_types_t,
                      resource_types_t.c.id == associations_t.c.resource_type_id)
                .where(resource_types_t.c.name.in_(query.resource_types))))
        descending = query.sort_dir == "desc"
        with connect(self.engine) as conn:
            if query.marker is not None:
                marker = self._row(conn, query.marker, viewer)
                conds.append(_after(keys, [getattr(marker, k.name) for k in keys], descending))
            order = [k.desc() if descending else k.asc() for k in keys]
            rows = conn.execute(sa.select(*_NS_COLUMNS).where(*conds).order_by(*order)
                                .limit(query.limit)).all()
            found = self._associations(conn, [row.id for row in rows])
            return [NamespaceRecord(*row, resource_types=tuple(found[row.id])) for row in rows]

    def create_namespace(
        self,
        values: Mapping[str, Any],
        *,
        resource_types: Iterable[NewAssociation] = (),
        properties: Mapping[str, Mapping[str, Any]] | None = None,
        objects: Iterable[NewObject] = (),
        tags: Iterable[str] = (),
    ) -> NamespaceContents:
        """A namespace and its contents, all or nothing (Conflict on any duplicate)."""
        now = self.clock()
        row = {"display_name": None, "description": None, "visibility": "private",
               "protected": False, "owner": None,
               **{k: values[k] for k in NAMESPACE_FIELDS if k in values},
               "created_at": now, "updated_at": now}
        name = row["namespace"]
        with connect(self.engine, write=True) as conn:
            try:
                namespace_id = conn.execute(
                    namespaces_t.insert().values(**row)).inserted_primary_key[0]
            except IntegrityError:
                raise Conflict(f"The metadata definition namespace={name} already "
                               "exists.") from None
            for association in resource_types:
                self._associate(conn, namespace_id, name, association, now)
            for prop_name, schema in (properties or {}).items():
                self._insert_property(conn, namespace_id, name, prop_name, schema, now)
            for obj in objects:
                self._insert_object(conn, namespace_id, name, obj, now)
            for tag in tags:
                self._insert_tag(conn, namespace_id, name, tag, now)
        return self.contents(name, ADMIN)

    def update_namespace(self, name: str, viewer: MetadefViewer, values: Mapping[str, Any]
                         ) -> NamespaceRecord:
        """Set the namespace's own fields (a rename onto another name is a Conflict)."""
        changes = {k: values[k] for k in NAMESPACE_FIELDS if k in values}
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            try:
                conn.execute(namespaces_t.update().where(namespaces_t.c.id == row.id)
                             .values(**changes, updated_at=self.clock()))
            except IntegrityError:
                raise Conflict("Invalid update. It would result in a duplicate metadata "
                               "definition namespace with the same name of "
                               f"{changes.get('namespace')}") from None
        return self.namespace(changes.get("namespace", name), ADMIN)

    def delete_namespace(self, name: str, viewer: MetadefViewer) -> None:
        """The namespace and all it defines (the resource types stay)."""
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            for table in (associations_t, properties_t, objects_t, tags_t):
                conn.execute(table.delete().where(table.c.namespace_id == row.id))
            conn.execute(namespaces_t.delete().where(namespaces_t.c.id == row.id))

    def clear(self, name: str, viewer: MetadefViewer, kind: str) -> None:
        """Remove all of one kind (``objects``, ``properties``, ``tags``) of a namespace."""
        table = {"objects": objects_t, "properties": properties_t, "tags": tags_t}[kind]
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            conn.execute(table.delete().where(table.c.namespace_id == row.id))

    def namespace_names(self) -> list[str]:
        """Every namespace's name, oldest first (export, unload)."""
        with connect(self.engine) as conn:
            return list(conn.execute(sa.select(namespaces_t.c.namespace).order_by(
                namespaces_t.c.created_at, namespaces_t.c.id)).scalars())

    # -- resource types ----------------------------------------------------------------------

    def delete_unused_resource_types(self) -> int:
        """Remove the resource types no namespace applies to (``streamd metadefs unload``)."""
        with connect(self.engine, write=True) as conn:
            used = sa.select(associations_t.c.resource_type_id)
            return conn.execute(resource_types_t.delete().where(
                resource_types_t.c.id.not_in(used))).rowcount

    def resource_types(self) -> list[ResourceTypeRecord]:
        with connect(self.engine) as conn:
            rows = conn.execute(sa.select(resource_types_t.c.name, resource_types_t.c.protected,
                                          resource_types_t.c.created_at,
                                          resource_types_t.c.updated_at)
                                .order_by(resource_types_t.c.id))
            return [ResourceTypeRecord(*row) for row in rows]

    def associations(self, name: str, viewer: MetadefViewer) -> list[Association]:
        with connect(self.engine) as conn:
            row = self._row(conn, name, viewer)
            return self._associations(conn, [row.id])[row.id]

    def _associate(self, conn: sa.Connection, namespace_id: int, namespace: str,
                   new: NewAssociation, now: dt.datetime) -> Association:
        """Associate; the resource type is created on first use, as Glance does."""
        type_id = conn.execute(sa.select(resource_types_t.c.id)
                               .where(resource_types_t.c.name == new.name)).scalar()
        if type_id is None:
            try:
                type_id = conn.execute(resource_types_t.insert().values(
                    name=new.name, protected=False, created_at=now, updated_at=now)
                ).inserted_primary_key[0]
            except IntegrityError:
                raise Conflict(f"The resource type {new.name} was being created by another "
                               "request: retry.") from None
        try:
            conn.execute(associations_t.insert().values(
                namespace_id=namespace_id, resource_type_id=type_id, prefix=new.prefix,
                properties_target=new.properties_target, created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"The metadata definition resource-type association of "
                           f"resource-type={new.name} to namespace={namespace} already "
                           "exists.") from None
        return Association(new.name, new.prefix, new.properties_target, now, now)

    def associate(self, name: str, viewer: MetadefViewer, new: NewAssociation) -> Association:
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            return self._associate(conn, row.id, name, new, self.clock())

    def dissociate(self, name: str, viewer: MetadefViewer, resource_type: str) -> None:
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            type_ids = sa.select(resource_types_t.c.id).where(
                resource_types_t.c.name == resource_type).scalar_subquery()
            done = conn.execute(associations_t.delete().where(
                associations_t.c.namespace_id == row.id,
                associations_t.c.resource_type_id == type_ids))
            if done.rowcount == 0:
                raise NotFound(f"Failed to find resource type {resource_type} to delete")

    # -- properties --------------------------------------------------------------------------

    def _properties(self, conn: sa.Connection, namespace_id: int) -> list[PropertyRecord]:
        rows = conn.execute(sa.select(properties_t).where(
            properties_t.c.namespace_id == namespace_id).order_by(properties_t.c.name))
        return [_property(row) for row in rows]

    def _insert_property(self, conn: sa.Connection, namespace_id: int, namespace: str,
                         name: str, schema: Mapping[str, Any], now: dt.datetime) -> None:
        try:
            conn.execute(properties_t.insert().values(
                namespace_id=namespace_id, name=name, json_schema=json.dumps(schema),
                created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"A metadata definition property with name={name} already exists "
                           f"in namespace={namespace}.") from None

    def properties(self, name: str, viewer: MetadefViewer) -> list[PropertyRecord]:
        with connect(self.engine) as conn:
            return self._properties(conn, self._row(conn, name, viewer).id)

    def property(self, name: str, viewer: MetadefViewer, prop: str) -> PropertyRecord:
        with connect(self.engine) as conn:
            row = self._row(conn, name, viewer)
            found = conn.execute(sa.select(properties_t).where(
                properties_t.c.namespace_id == row.id, properties_t.c.name == prop)).first()
        if found is None:
            raise NotFound(f"Could not find property {prop}")
        return _property(found)

    def prefix(self, name: str, viewer: MetadefViewer, resource_type: str) -> str | None:
        """The prefix of the namespace's properties for ``resource_type`` (NotFound when
        the namespace does not apply to it)."""
        for association in self.associations(name, viewer):
            if association.name == resource_type:
                return association.prefix
        raise NotFound(f"The metadata definition resource-type association of "
                       f"resource_type={resource_type} to namespace={name}, was not found.")

    def create_property(self, name: str, viewer: MetadefViewer, prop: str,
                        schema: Mapping[str, Any]) -> PropertyRecord:
        now = self.clock()
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            self._insert_property(conn, row.id, name, prop, schema, now)
        return PropertyRecord(prop, dict(schema), now, now)

    def update_property(self, name: str, viewer: MetadefViewer, prop: str, new_name: str,
                        schema: Mapping[str, Any]) -> PropertyRecord:
        return _property(self._update(properties_t, name, viewer, prop, "property", {
            "name": new_name, "json_schema": json.dumps(schema)}))

    def delete_property(self, name: str, viewer: MetadefViewer, prop: str) -> None:
        self._delete(properties_t, name, viewer, prop, "property")

    # -- objects -----------------------------------------------------------------------------

    def _objects(self, conn: sa.Connection, namespace_id: int) -> list[ObjectRecord]:
        rows = conn.execute(sa.select(objects_t).where(
            objects_t.c.namespace_id == namespace_id).order_by(objects_t.c.name))
        return [_object(row) for row in rows]

    def _insert_object(self, conn: sa.Connection, namespace_id: int, namespace: str,
                       obj: NewObject, now: dt.datetime) -> None:
        try:
            conn.execute(objects_t.insert().values(
                namespace_id=namespace_id, name=obj.name, description=obj.description,
                required=None if obj.required is None else json.dumps(obj.required),
                json_schema=json.dumps(obj.properties), created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"A metadata definition object with name={obj.name} already "
                           f"exists in namespace={namespace}.") from None

    def objects(self, name: str, viewer: MetadefViewer) -> list[ObjectRecord]:
        with connect(self.engine) as conn:
            return self._objects(conn, self._row(conn, name, viewer).id)

    def object(self, name: str, viewer: MetadefViewer, obj: str) -> ObjectRecord:
        with connect(self.engine) as conn:
            row = self._row(conn, name, viewer)
            found = conn.execute(sa.select(objects_t).where(
                objects_t.c.namespace_id == row.id, objects_t.c.name == obj)).first()
        if found is None:
            raise NotFound(f"Could not find metadata object {obj}")
        return _object(found)

    def create_object(self, name: str, viewer: MetadefViewer, obj: NewObject) -> ObjectRecord:
        now = self.clock()
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            self._insert_object(conn, row.id, name, obj, now)
        return ObjectRecord(obj.name, obj.description, obj.required, obj.properties, now, now)

    def update_object(self, name: str, viewer: MetadefViewer, obj: str, new: NewObject
                      ) -> ObjectRecord:
        return _object(self._update(objects_t, name, viewer, obj, "object", {
            "name": new.name, "description": new.description,
            "required": None if new.required is None else json.dumps(new.required),
            "json_schema": json.dumps(new.properties)}))

    def delete_object(self, name: str, viewer: MetadefViewer, obj: str) -> None:
        self._delete(objects_t, name, viewer, obj, "object")

    # -- tags --------------------------------------------------------------------------------

    def _tags(self, conn: sa.Connection, namespace_id: int) -> list[TagRecord]:
        rows = conn.execute(sa.select(tags_t).where(tags_t.c.namespace_id == namespace_id)
                            .order_by(tags_t.c.created_at.desc(), tags_t.c.id.desc()))
        return [_tag(row) for row in rows]

    def _insert_tag(self, conn: sa.Connection, namespace_id: int, namespace: str, tag: str,
                    now: dt.datetime) -> None:
        try:
            conn.execute(tags_t.insert().values(namespace_id=namespace_id, name=tag,
                                                created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"A metadata tag with name={tag} already exists in "
                           f"namespace={namespace}.") from None

    def tags(self, name: str, viewer: MetadefViewer, *, sort_key: str = "created_at",
             sort_dir: str = "desc", marker: str | None = None, limit: int | None = None
             ) -> list[TagRecord]:
        """A namespace's tags in ``sort_key`` order, then (created_at, id); after the tag
        named ``marker`` (NotFound if it has none such)."""
        if sort_key not in TAG_SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {sort_key}. Use one of "
                             f"{', '.join(TAG_SORT_KEYS)}.")
        keys = [tags_t.c[k] for k in dict.fromkeys((sort_key, "created_at", "id"))]
        descending = sort_dir == "desc"
        with connect(self.engine) as conn:
            namespace_id = self._row(conn, name, viewer).id
            conds = [tags_t.c.namespace_id == namespace_id]
            if marker is not None:
                found = conn.execute(sa.select(*keys).where(
                    tags_t.c.namespace_id == namespace_id, tags_t.c.name == marker)).first()
                if found is None:
                    raise NotFound(f"Could not find metadata tag {marker}")
                conds.append(_after(keys, list(found), descending))
            order = [k.desc() if descending else k.asc() for k in keys]
            rows = conn.execute(sa.select(tags_t).where(*conds).order_by(*order)
                                .limit(limit))
            return [_tag(row) for row in rows]

    def tag(self, name: str, viewer: MetadefViewer, tag: str) -> TagRecord:
        with connect(self.engine) as conn:
            row = self._row(conn, name, viewer)
            found = conn.execute(sa.select(tags_t).where(
                tags_t.c.namespace_id == row.id, tags_t.c.name == tag)).first()
        if found is None:
            raise NotFound(f"Could not find metadata tag {tag}")
        return _tag(found)

    def create_tag(self, name: str, viewer: MetadefViewer, tag: str) -> TagRecord:
        now = self.clock()
        with connect(self.engine, write=True) as conn:
            self._insert_tag(conn, self._row(conn, name, viewer).id, name, tag, now)
        return TagRecord(tag, now, now)

    def create_tags(self, name: str, viewer: MetadefViewer, tags: Sequence[str], *,
                    append: bool) -> list[TagRecord]:
        """Add ``tags``, replacing the namespace's tags unless ``append``; all or nothing."""
        now = self.clock()
        with connect(self.engine, write=True) as conn:
            namespace_id = self._row(conn, name, viewer).id
            if not append:
                conn.execute(tags_t.delete().where(tags_t.c.namespace_id == namespace_id))
            for tag in tags:
                self._insert_tag(conn, namespace_id, name, tag, now)
        return [TagRecord(tag, now, now) for tag in tags]

    def update_tag(self, name: str, viewer: MetadefViewer, tag: str, new_name: str
                   ) -> TagRecord:
        return _tag(self._update(tags_t, name, viewer, tag, "tag", {"name": new_name}))

    def delete_tag(self, name: str, viewer: MetadefViewer, tag: str) -> None:
        self._delete(tags_t, name, viewer, tag, "tag")

    # -- one row of a namespace --------------------------------------------------------------

    def _update(self, table: sa.Table, name: str, viewer: MetadefViewer, item: str,
                what: str, values: dict[str, Any]) -> Any:
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            where = (table.c.namespace_id == row.id, table.c.name == item)
            try:
                done = conn.execute(table.update().where(*where)
                                    .values(**values, updated_at=self.clock()))
            except IntegrityError:
                raise Conflict(f"Invalid update. It would result in a duplicate metadata "
                               f"definition {what} with the same name={values['name']} in "
                               f"namespace={name}.") from None
            if done.rowcount == 0:
                raise NotFound(f"Could not find {what} {item}")
            return conn.execute(sa.select(table).where(
                table.c.namespace_id == row.id, table.c.name == values["name"])).one()

    def _delete(self, table: sa.Table, name: str, viewer: MetadefViewer, item: str,
                what: str) -> None:
        with connect(self.engine, write=True) as conn:
            row = self._row(conn, name, viewer)
            done = conn.execute(table.delete().where(table.c.namespace_id == row.id,
                                                     table.c.name == item))
            if done.rowcount == 0:
                raise NotFound(f"Could not find {what} {item}")


def _after(keys: Sequence[sa.ColumnElement[Any]], values: Sequence[Any], descending: bool
           ) -> sa.ColumnElement[bool]:
    """Rows after the marker's ``values`` in the order of ``keys`` (a keyset seek)."""
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j] == values[j] for j in range(i)]
        beyond = key < values[i] if descending else key > values[i]
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)

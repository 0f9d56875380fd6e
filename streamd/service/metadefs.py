"""Metadata definitions (Glance's metadefs API): the use cases, with Glance's default policy.

- **Read**: anyone reads ``public`` namespaces and those without an owner; a project reads
  its own ``private`` ones; admins read all. A namespace the caller may not see is 404.
- **Write**: creating, changing and deleting namespaces and anything in them is for admins
  (Glance's ``metadef_admin`` defaults): others get 403 once the namespace is found.
- **Protected**: a ``protected`` namespace cannot be deleted or cleared, nor can any of its
  properties, objects, tags or resource-type associations (403) until it is unprotected.
- **Bodies** are validated with Glance's own schemas (``streamd.service.metadefs_schemas``),
  which clients validate with too; read-only fields are refused (403), as Glance does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden, NotFound
from streamd.registry.metadefs import (
    Association,
    MetadefRegistry,
    MetadefViewer,
    NamespaceContents,
    NamespaceQuery,
    NamespaceRecord,
    NewAssociation,
    NewObject,
    ObjectRecord,
    PropertyRecord,
    ResourceTypeRecord,
    TagRecord,
)
from streamd.service.metadefs_schemas import METADEF_SCHEMAS
from streamd.service.runtime import Runtime

# What a property definition may hold (Glance's PropertyType): anything else is dropped.
PROPERTY_FIELDS = ("name", "type", "title", "description", "operators", "default", "readonly",
                   "minimum", "maximum", "enum", "pattern", "minLength", "maxLength",
                   "confidential", "items", "uniqueItems", "minItems", "maxItems",
                   "additionalItems")
ITEM_FIELDS = ("type", "enum")
INTEGER_FIELDS = ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems")
# Fields a request may not send, per kind (Glance's _disallowed_properties).
_READ_ONLY = {"namespace": ("self", "schema", "created_at", "updated_at"),
              "object": ("self", "schema", "created_at", "updated_at"),
              "property": ("created_at", "updated_at"),
              "resource_type": ("created_at", "updated_at"),
              "tag": ("created_at", "updated_at"),
              "tags": ("created_at", "updated_at")}


def registry(rt: Runtime) -> MetadefRegistry:
    """The metadefs tables on the runtime's registry engine (a view: costs nothing)."""
    return MetadefRegistry(rt.registry.engine)


def viewer(ctx: RequestContext) -> MetadefViewer:
    return MetadefViewer(project_id=ctx.project_id, is_admin=ctx.is_admin)


def _ensure_admin(ctx: RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"You are not authorized to complete {action} action.")


def _ensure_unprotected(namespace: NamespaceRecord, what: str, name: str) -> None:
    if namespace.protected:
        raise Forbidden(f"Metadata definition {what} {name} is protected and cannot be "
                        f"deleted: first set the namespace {namespace.namespace}'s 'protected' "
                        "to false.")


def validate(kind: str, body: Any) -> dict[str, Any]:
    """``body`` checked as Glance checks it: an object, no read-only field, valid against
    the kind's schema (400 naming what failed)."""
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object (a metadefs {kind}).")
    for key in _READ_ONLY[kind]:
        if key in body:
            raise Forbidden(f"Attribute '{key}' is read-only.")
    schema = METADEF_SCHEMAS[kind]
    try:
        jsonschema.validate(body, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        raise BadRequest(f"Provided object does not match schema '{schema['name']}': "
                         f"{e.message}" + (f" (at {where})" if where else "")) from None
    return body


# checks property definitions against the JSON Schema (Draft 4) meta-schema
_META_SCHEMA = jsonschema.Draft4Validator(jsonschema.Draft4Validator.META_SCHEMA)
NAME_LIMIT = 80  # characters of a name, prefix or target (the columns' size, Glance's limit)


def check_contents(body: Mapping[str, Any]) -> None:
    """The names inside a namespace document fit their columns: Glance's namespace schema
    leaves them unbounded (and its databases fail on them); 400 naming the first too long."""
    names = [("property", k) for k in body.get("properties") or {}]
    for obj in body.get("objects") or ():
        names.append(("object", obj.get("name", "")))
        names += [(f"property of object {obj.get('name')}", k)
                  for k in obj.get("properties") or {}]
    names += [("tag", t.get("name", "")) for t in body.get("tags") or ()]
    for association in body.get("resource_type_associations") or ():
        names += [(f"resource type association {key}", association.get(key) or "")
                  for key in ("name", "prefix", "properties_target")]
    for what, name in names:
        if len(name) > NAME_LIMIT:
            raise BadRequest(f"The {what} name {name[:20]!r}… is longer than {NAME_LIMIT} "
                             "characters.")
    for obj in body.get("objects") or ():
        if not obj.get("name"):
            raise BadRequest("Every object of a namespace needs a 'name'.")
    for association in body.get("resource_type_associations") or ():
        if not association.get("name"):
            raise BadRequest("Every resource type association needs a 'name'.")


def property_fragment(value: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """A property definition as Glance stores it (its PropertyType model): only its fields
    (another is a 400; Glance answers 500), a ``default`` as text (``8`` -> ``"8"``; one
    that is no string or number is dropped), whole numbers for the bounds."""
    unknown = sorted(set(value) - set(PROPERTY_FIELDS))
    items = value.get("items")
    if isinstance(items, dict):
        unknown += [f"items.{k}" for k in sorted(set(items) - set(ITEM_FIELDS))]
    if unknown:
        raise BadRequest(f"Unknown attribute(s) in the definition of property "
                         f"{name or value.get('name', '')!r}: {', '.join(unknown)}; a property "
                         f"has {', '.join(PROPERTY_FIELDS)}.")
    fragment = {k: value[k] for k in PROPERTY_FIELDS if value.get(k) is not None}
    default = fragment.pop("default", None)
    if isinstance(default, str | int | float):
        fragment["default"] = str(default)
    for key in INTEGER_FIELDS:
        if isinstance(fragment.get(key), float):
            fragment[key] = int(fragment[key])
    _check_json_schema(fragment, name or str(value.get("name", "")))
    return fragment


def _check_json_schema(fragment: Mapping[str, Any], name: str) -> None:
    """A definition must be a JSON Schema that can be used (Draft 4, the draft of Glance's
    schemas) with a ``pattern`` that compiles. Beyond Glance, which stores ``"pattern": "["``
    or ``"enum": []`` and leaves the failure to whoever applies the definition. Repeated
    ``enum`` values are let through: harmless, and Glance's own files have some."""
    for error in _META_SCHEMA.iter_errors({k: v for k, v in fragment.items() if k != "name"}):
        if error.validator == "uniqueItems":
            continue
        where = "/".join(str(p) for p in error.absolute_path)
        raise BadRequest(f"The definition of property {name!r} is not a valid JSON Schema: "
                         f"{error.message}" + (f" (at {where})" if where else ""))
    pattern = fragment.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as e:
            raise BadRequest(f"The pattern of property {name!r} is not a regular expression: "
                             f"{e}") from None


def new_object(body: Mapping[str, Any]) -> NewObject:
    return NewObject(name=body["name"], description=body.get("description"),
                     required=body.get("required"),
                     properties={k: property_fragment(v, k)
                                 for k, v in (body.get("properties") or {}).items()})


def new_association(body: Mapping[str, Any]) -> NewAssociation:
    return NewAssociation(name=body["name"], prefix=body.get("prefix"),
                          properties_target=body.get("properties_target"))


# -- namespaces --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespacePage:
    namespaces: list[NamespaceRecord]
    next_marker: str | None


def _limit(value: str | None, default: int, maximum: int) -> int:
    if value is None:
        return min(default, maximum)
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return min(limit, maximum)


async def list_namespaces(rt: Runtime, ctx: RequestContext,
                          params: Sequence[tuple[str, str]]) -> NamespacePage:
    """One page (Glance's parameters: ``limit``, ``marker``, ``sort_key``, ``sort_dir``,
    ``visibility``, ``resource_types`` — a comma-separated list, any of which matches).
    As Glance, a full page has a next marker, even when nothing follows it."""
    values = dict(params)
    sort_dir = values.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction: {sort_dir}")
    visibility = values.get("visibility") or None
    if visibility is not None and visibility not in ("public", "private"):
        raise BadRequest(f"Invalid visibility value: {visibility}")
    limit = _limit(values.get("limit"), rt.settings.limit_param_default,
                   rt.settings.api_limit_max)
    kinds = tuple(t for t in values.get("resource_types", "").split(",") if t)
    query = NamespaceQuery(visibility=visibility, resource_types=kinds,
                           sort_key=values.get("sort_key", "created_at"), sort_dir=sort_dir,
                           marker=values.get("marker"), limit=limit)
    page = await rt.db(registry(rt).list_namespaces, viewer(ctx), query)
    full = bool(page) and len(page) == limit
    return NamespacePage(page, page[-1].namespace if full else None)


async def show_namespace(rt: Runtime, ctx: RequestContext, name: str,
                         resource_type: str | None = None) -> NamespaceContents:
    """The namespace with its contents; with ``resource_type``, the property names (of the
    namespace and of its objects) carry that resource type's prefix."""
    contents = await rt.db(registry(rt).contents, name, viewer(ctx))
    if not resource_type:
        return contents
    prefix = next((a.prefix for a in contents.namespace.resource_types
                   if a.name == resource_type), None)
    if not prefix:
        return contents
    return NamespaceContents(
        contents.namespace,
        properties=[PropertyRecord(prefix + p.name, p.schema, p.created_at, p.updated_at)
                    for p in contents.properties],
        objects=[ObjectRecord(o.name, o.description,
                              None if o.required is None else [prefix + r for r in o.required],
                              {prefix + k: v for k, v in o.properties.items()},
                              o.created_at, o.updated_at) for o in contents.objects],
        tags=contents.tags,
    )


async def create_namespace(rt: Runtime, ctx: RequestContext, body: Any) -> NamespaceContents:
    body = validate("namespace", body)
    check_contents(body)
    _ensure_admin(ctx, "add_metadef_namespace")
    values = {k: body[k] for k in ("namespace", "display_name", "description", "visibility",
                                   "protected", "owner") if k in body}
    values.setdefault("owner", ctx.project_id)
    return await rt.db(
        registry(rt).create_namespace, values,
        resource_types=[new_association(a) for a in body.get("resource_type_associations")
                        or ()],
        properties={k: property_fragment(v, k)
                    for k, v in (body.get("properties") or {}).items()},
        objects=[new_object(o) for o in body.get("objects") or ()],
        tags=[t["name"] for t in body.get("tags") or () if "name" in t],
    )


async def update_namespace(rt: Runtime, ctx: RequestContext, name: str, body: Any
                           ) -> NamespaceRecord:
    """Glance's PUT: fields left out take their create-time defaults (no display name or
    description, private, unprotected, the caller's project)."""
    body = validate("namespace", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "modify_metadef_namespace")
    values = {"namespace": body["namespace"], "display_name": body.get("display_name"),
              "description": body.get("description"),
              "visibility": body.get("visibility") or "private",
              "protected": bool(body.get("protected")),
              "owner": body.get("owner") or ctx.project_id}
    return await rt.db(reg.update_namespace, name, viewer(ctx), values)


async def delete_namespace(rt: Runtime, ctx: RequestContext, name: str) -> None:
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "delete_metadef_namespace")
    _ensure_unprotected(namespace, "namespace", name)
    await rt.db(reg.delete_namespace, name, viewer(ctx))


async def clear_namespace(rt: Runtime, ctx: RequestContext, name: str, kind: str) -> None:
    """Remove all ``kind`` (objects, properties, tags) of a namespace."""
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "delete_metadef_namespace")
    _ensure_unprotected(namespace, "namespace", name)
    await rt.db(reg.clear, name, viewer(ctx), kind)


# -- properties ------------------------------------------------------------------------------


async def list_properties(rt: Runtime, ctx: RequestContext, name: str) -> list[PropertyRecord]:
    return await rt.db(registry(rt).properties, name, viewer(ctx))


async def show_property(rt: Runtime, ctx: RequestContext, name: str, prop: str,
                        resource_type: str | None = None) -> PropertyRecord:
    """``prop`` may carry ``resource_type``'s prefix, which is then required."""
    reg = registry(rt)
    if resource_type:
        prefix = await rt.db(reg.prefix, name, viewer(ctx), resource_type)
        if not prefix or not prop.startswith(prefix):
            raise NotFound(f"Property {prop} does not start with the expected resource type "
                             f"association prefix of '{prefix}'.")
        prop = prop[len(prefix):]
    return await rt.db(reg.property, name, viewer(ctx), prop)


async def create_property(rt: Runtime, ctx: RequestContext, name: str, body: Any
                          ) -> PropertyRecord:
    body = validate("property", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "add_metadef_property")
    return await rt.db(reg.create_property, name, viewer(ctx), body["name"],
                       property_fragment(body))


async def update_property(rt: Runtime, ctx: RequestContext, name: str, prop: str, body: Any
                          ) -> PropertyRecord:
    body = validate("property", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "modify_metadef_property")
    return await rt.db(reg.update_property, name, viewer(ctx), prop, body["name"],
                       property_fragment(body))


async def delete_property(rt: Runtime, ctx: RequestContext, name: str, prop: str) -> None:
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "remove_metadef_property")
    await rt.db(reg.property, name, viewer(ctx), prop)
    _ensure_unprotected(namespace, "property", prop)
    await rt.db(reg.delete_property, name, viewer(ctx), prop)


# -- objects ---------------------------------------------------------------------------------


async def list_objects(rt: Runtime, ctx: RequestContext, name: str) -> list[ObjectRecord]:
    return await rt.db(registry(rt).objects, name, viewer(ctx))


async def show_object(rt: Runtime, ctx: RequestContext, name: str, obj: str) -> ObjectRecord:
    return await rt.db(registry(rt).object, name, viewer(ctx), obj)


async def create_object(rt: Runtime, ctx: RequestContext, name: str, body: Any) -> ObjectRecord:
    body = validate("object", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "add_metadef_object")
    return await rt.db(reg.create_object, name, viewer(ctx), new_object(body))


async def update_object(rt: Runtime, ctx: RequestContext, name: str, obj: str, body: Any
                        ) -> ObjectRecord:
    body = validate("object", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "modify_metadef_object")
    return await rt.db(reg.update_object, name, viewer(ctx), obj, new_object(body))


async def delete_object(rt: Runtime, ctx: RequestContext, name: str, obj: str) -> None:
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "delete_metadef_object")
    await rt.db(reg.object, name, viewer(ctx), obj)
    _ensure_unprotected(namespace, "object", obj)
    await rt.db(reg.delete_object, name, viewer(ctx), obj)


# -- tags ------------------------------------------------------------------------------------


async def list_tags(rt: Runtime, ctx: RequestContext, name: str,
                    params: Sequence[tuple[str, str]] = ()) -> list[TagRecord]:
    """Glance's parameters: ``limit`` (none: all), ``marker`` (a tag name), ``sort_key``,
    ``sort_dir``; newest first."""
    values = dict(params)
    sort_dir = values.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction: {sort_dir}")
    limit = values.get("limit") or None
    return await rt.db(registry(rt).tags, name, viewer(ctx),
                       sort_key=values.get("sort_key", "created_at"), sort_dir=sort_dir,
                       marker=values.get("marker") or None,
                       limit=None if limit is None else _limit(limit, 0,
                                                               rt.settings.api_limit_max))


async def show_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> TagRecord:
    return await rt.db(registry(rt).tag, name, viewer(ctx), tag)


def _tag_name(tag: str) -> str:
    if not tag or len(tag) > 80:
        raise BadRequest("A tag name is 1 to 80 characters long.")
    return tag


async def create_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> TagRecord:
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "add_metadef_tag")
    return await rt.db(reg.create_tag, name, viewer(ctx), _tag_name(tag))


async def create_tags(rt: Runtime, ctx: RequestContext, name: str, body: Any, *, append: bool
                      ) -> list[TagRecord]:
    """``POST …/tags``: replace the namespace's tags with these (or add them: ``append``)."""
    body = validate("tags", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "add_metadef_tags")
    found = body.get("tags") or ()
    # Glance's tag schema says no "type": a list or a number passes it as an item
    if not all(isinstance(t, dict) for t in found):
        raise BadRequest('Each of "tags" is an object: {"tags": [{"name": "…"}, …]}.')
    tags = [_tag_name(t.get("name", "")) for t in found]
    return await rt.db(reg.create_tags, name, viewer(ctx), tags, append=append)


async def update_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str, body: Any
                     ) -> TagRecord:
    body = validate("tag", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "modify_metadef_tag")
    return await rt.db(reg.update_tag, name, viewer(ctx), tag, _tag_name(body["name"]))


async def delete_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> None:
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "delete_metadef_tag")
    await rt.db(reg.tag, name, viewer(ctx), tag)
    _ensure_unprotected(namespace, "tag", tag)
    await rt.db(reg.delete_tag, name, viewer(ctx), tag)


# -- resource types --------------------------------------------------------------------------


async def list_resource_types(rt: Runtime, ctx: RequestContext) -> list[ResourceTypeRecord]:
    return await rt.db(registry(rt).resource_types)


async def list_associations(rt: Runtime, ctx: RequestContext, name: str) -> list[Association]:
    return await rt.db(registry(rt).associations, name, viewer(ctx))


async def associate(rt: Runtime, ctx: RequestContext, name: str, body: Any) -> Association:
    body = validate("resource_type", body)
    reg = registry(rt)
    await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "add_metadef_resource_type_association")
    return await rt.db(reg.associate, name, viewer(ctx), new_association(body))


async def dissociate(rt: Runtime, ctx: RequestContext, name: str, resource_type: str) -> None:
    reg = registry(rt)
    namespace = await rt.db(reg.namespace, name, viewer(ctx))
    _ensure_admin(ctx, "remove_metadef_resource_type_association")
    if not any(a.name == resource_type for a in namespace.resource_types):
        raise NotFound(f"Failed to find resource type {resource_type} to delete")
    _ensure_unprotected(namespace, "resource-type-association", resource_type)
    await rt.db(reg.dissociate, name, viewer(ctx), resource_type)

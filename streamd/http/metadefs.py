"""``/v2/metadefs/…``: metadata definitions (namespaces, properties, objects, tags, resource
types), shaped as Glance shows them: fields without a value are left out, and each kind has
the extra fields Glance gives it in each answer (a created namespace echoes its contents
without their timestamps; a shown one has them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quart import Blueprint, Response, request

from streamd.http.bodies import (
    json_body,
    json_response,
    listing_body,
    no_content,
    path_segment,
)
from streamd.http.context import context, runtime
from streamd.http.image_view import timestamp
from streamd.registry.metadefs import (
    Association,
    NamespaceContents,
    NamespaceRecord,
    ObjectRecord,
    PropertyRecord,
    TagRecord,
)
from streamd.service import metadefs

bp = Blueprint("metadefs", __name__)

NAMESPACES = "/v2/metadefs/namespaces"
NAMESPACE = f"{NAMESPACES}/<namespace>"


def _times(record: Any) -> dict[str, str]:
    return {"created_at": timestamp(record.created_at),
            "updated_at": timestamp(record.updated_at)}


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def association_view(a: Association, *, times: bool = True) -> dict[str, Any]:
    view = _without_none({"name": a.name, "prefix": a.prefix,
                          "properties_target": a.properties_target})
    return {**view, **_times(a)} if times else view


def namespace_view(ns: NamespaceRecord, *, associations: bool = True) -> dict[str, Any]:
    view = _without_none({
        "namespace": ns.namespace, "display_name": ns.display_name,
        "description": ns.description, "visibility": ns.visibility,
        "protected": ns.protected, "owner": ns.owner, **_times(ns),
    })
    if associations and ns.resource_types:
        view["resource_type_associations"] = [association_view(a) for a in ns.resource_types]
    view["self"] = f"{NAMESPACES}/{ns.namespace}"
    view["schema"] = "/v2/schemas/metadefs/namespace"
    return view


def object_view(namespace: str, o: ObjectRecord, *, echo: bool = False, links: bool = True
                ) -> dict[str, Any]:
    """As shown (``required`` and ``properties`` always there), or as a create echoes what
    was sent (``echo``: only the fields given); ``links``: timestamps, self and schema."""
    if echo:
        view = _without_none({"name": o.name, "description": o.description,
                              "required": o.required, "properties": o.properties or None})
    else:
        view = _without_none({"name": o.name, "description": o.description})
        view.update(required=o.required or [], properties=o.properties)
    if links:
        view.update(_times(o), self=f"{NAMESPACES}/{namespace}/objects/{o.name}",
                    schema="/v2/schemas/metadefs/object")
    return view


def property_view(p: PropertyRecord) -> dict[str, Any]:
    return {**p.schema, "name": p.name}


def tag_view(t: TagRecord) -> dict[str, Any]:
    return {"name": t.name, **_times(t)}


def contents_view(c: NamespaceContents, *, created: bool = False) -> dict[str, Any]:
    """A namespace with what it defines: as shown, or (``created``) as a create echoes it."""
    name = c.namespace.namespace
    view = namespace_view(c.namespace, associations=False)
    if c.namespace.resource_types:
        view["resource_type_associations"] = [association_view(a, times=not created)
                                              for a in c.namespace.resource_types]
    if c.properties:
        view["properties"] = {p.name: p.schema for p in c.properties}
    if c.objects:
        view["objects"] = [object_view(name, o, echo=created, links=not created)
                           for o in c.objects]
    if c.tags:
        view["tags"] = [{"name": t.name} for t in c.tags]
    return view


def _when(moment: dt.datetime | None) -> str | None:
    return None if moment is None else timestamp(moment)


# -- namespaces --------------------------------------------------------------------------------


@bp.get(NAMESPACES)
async def list_namespaces() -> Response:
    params = list(request.args.items(multi=True))
    page = await metadefs.list_namespaces(runtime(), context(), params)
    return json_response(listing_body(
        NAMESPACES, "namespaces", [namespace_view(ns) for ns in page.namespaces],
        page.next_marker, params, "/v2/schemas/metadefs/namespaces"))


@bp.post(NAMESPACES)
async def create_namespace() -> Response:
    created = await metadefs.create_namespace(runtime(), context(), await json_body())
    view = contents_view(created, created=True)
    return json_response(view, 201, headers={
        # absolute, as Glance's; the name percent-encoded (Glance drops what a header cannot
        # hold, and a name with a tab or a control character once made this a bodiless 500)
        "Location": f"{request.host_url.rstrip('/')}{NAMESPACES}/"
                    f"{path_segment(created.namespace.namespace)}"})


@bp.get(NAMESPACE)
async def show_namespace(namespace: str) -> Response:
    contents = await metadefs.show_namespace(runtime(), context(), namespace,
                                             request.args.get("resource_type"))
    return json_response(contents_view(contents))


@bp.put(NAMESPACE)
async def update_namespace(namespace: str) -> Response:
    updated = await metadefs.update_namespace(runtime(), context(), namespace,
                                              await json_body())
    return json_response(namespace_view(updated, associations=False))


@bp.delete(NAMESPACE)
async def delete_namespace(namespace: str) -> Response:
    await metadefs.delete_namespace(runtime(), context(), namespace)
    return no_content()


@bp.delete(f"{NAMESPACE}/<any(objects, properties, tags):kind>")
async def clear_namespace(namespace: str, kind: str) -> Response:
    await metadefs.clear_namespace(runtime(), context(), namespace, kind)
    return no_content()


# -- properties --------------------------------------------------------------------------------


@bp.get(f"{NAMESPACE}/properties")
async def list_properties(namespace: str) -> Response:
    found = await metadefs.list_properties(runtime(), context(), namespace)
    return json_response({"properties": {p.name: p.schema for p in found}})


@bp.post(f"{NAMESPACE}/properties")
async def create_property(namespace: str) -> Response:
    created = await metadefs.create_property(runtime(), context(), namespace,
                                             await json_body())
    return json_response(property_view(created), 201)


@bp.get(f"{NAMESPACE}/properties/<prop>")
async def show_property(namespace: str, prop: str) -> Response:
    found = await metadefs.show_property(runtime(), context(), namespace, prop,
                                         request.args.get("resource_type"))
    return json_response(property_view(found))


@bp.put(f"{NAMESPACE}/properties/<prop>")
async def update_property(namespace: str, prop: str) -> Response:
    updated = await metadefs.update_property(runtime(), context(), namespace, prop,
                                             await json_body())
    return json_response(property_view(updated))


@bp.delete(f"{NAMESPACE}/properties/<prop>")
async def delete_property(namespace: str, prop: str) -> Response:
    await metadefs.delete_property(runtime(), context(), namespace, prop)
    return no_content()


# -- objects -----------------------------------------------------------------------------------


@bp.get(f"{NAMESPACE}/objects")
async def list_objects(namespace: str) -> Response:
    found = await metadefs.list_objects(runtime(), context(), namespace)
    # Glance's own link, without its leading slash
    return json_response({"objects": [object_view(namespace, o) for o in found],
                          "schema": "v2/schemas/metadefs/objects"})


@bp.post(f"{NAMESPACE}/objects")
async def create_object(namespace: str) -> Response:
    created = await metadefs.create_object(runtime(), context(), namespace, await json_body())
    return json_response(object_view(namespace, created, echo=True), 201)


@bp.get(f"{NAMESPACE}/objects/<obj>")
async def show_object(namespace: str, obj: str) -> Response:
    found = await metadefs.show_object(runtime(), context(), namespace, obj)
    return json_response(object_view(namespace, found))


@bp.put(f"{NAMESPACE}/objects/<obj>")
async def update_object(namespace: str, obj: str) -> Response:
    updated = await metadefs.update_object(runtime(), context(), namespace, obj,
                                           await json_body())
    return json_response(object_view(namespace, updated))


@bp.delete(f"{NAMESPACE}/objects/<obj>")
async def delete_object(namespace: str, obj: str) -> Response:
    await metadefs.delete_object(runtime(), context(), namespace, obj)
    return no_content()


# -- tags --------------------------------------------------------------------------------------


@bp.get(f"{NAMESPACE}/tags")
async def list_tags(namespace: str) -> Response:
    found = await metadefs.list_tags(runtime(), context(), namespace,
                                     list(request.args.items(multi=True)))
    return json_response({"tags": [{"name": t.name} for t in found]})


@bp.post(f"{NAMESPACE}/tags")
async def create_tags(namespace: str) -> Response:
    append = request.headers.get("X-Openstack-Append", "").strip().lower() in (
        "1", "t", "true", "on", "y", "yes")
    created = await metadefs.create_tags(runtime(), context(), namespace, await json_body(),
                                         append=append)
    return json_response({"tags": [{"name": t.name} for t in created]}, 201)


@bp.post(f"{NAMESPACE}/tags/<tag>")
async def create_tag(namespace: str, tag: str) -> Response:
    created = await metadefs.create_tag(runtime(), context(), namespace, tag)
    return json_response(tag_view(created), 201)


@bp.get(f"{NAMESPACE}/tags/<tag>")
async def show_tag(namespace: str, tag: str) -> Response:
    return json_response(tag_view(await metadefs.show_tag(runtime(), context(), namespace,
                                                          tag)))


@bp.put(f"{NAMESPACE}/tags/<tag>")
async def update_tag(namespace: str, tag: str) -> Response:
    updated = await metadefs.update_tag(runtime(), context(), namespace, tag,
                                        await json_body())
    return json_response(tag_view(updated))


@bp.delete(f"{NAMESPACE}/tags/<tag>")
async def delete_tag(namespace: str, tag: str) -> Response:
    await metadefs.delete_tag(runtime(), context(), namespace, tag)
    return no_content()


# -- resource types ----------------------------------------------------------------------------


@bp.get("/v2/metadefs/resource_types")
async def list_resource_types() -> Response:
    found = await metadefs.list_resource_types(runtime(), context())
    return json_response({"resource_types": [
        _without_none({"name": r.name, "created_at": _when(r.created_at),
                       "updated_at": _when(r.updated_at)}) for r in found]})


@bp.get(f"{NAMESPACE}/resource_types")
async def list_associations(namespace: str) -> Response:
    found = await metadefs.list_associations(runtime(), context(), namespace)
    return json_response({"resource_type_associations": [association_view(a) for a in found]})


@bp.post(f"{NAMESPACE}/resource_types")
async def associate(namespace: str) -> Response:
    created = await metadefs.associate(runtime(), context(), namespace, await json_body())
    return json_response(association_view(created), 201)


@bp.delete(f"{NAMESPACE}/resource_types/<resource_type>")
async def dissociate(namespace: str, resource_type: str) -> Response:
    await metadefs.dissociate(runtime(), context(), namespace, resource_type)
    return no_content()

"""``GET /openapi.json``: the OpenAPI 3.1 document of every route streamd serves.

Built from a table of operations rather than kept as a separate file: the bodies that Glance
defines (images, members, tasks, metadefs) are the very schemas the server validates with and
serves at ``/v2/schemas/…`` (``streamd.service.image_schema``, ``streamd.service.members``,
``streamd.service.metadefs_schemas``), embedded under ``components/schemas``, so what the
document says and what the server checks cannot disagree. Every operation answers its errors
(4xx, 5xx) with the one JSON envelope of ``streamd.http.errors``.
``tests/http/test_openapi.py`` checks that the operations are exactly the app's routes (Quart's
and the raw-ASGI data routes), ``tests/e2e/test_fuzz_openapi.py`` fuzzes a live server with it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from quart import Blueprint, Response

from streamd import __version__
from streamd.service.image_patch import MEDIA_TYPES as PATCH_MEDIA_TYPES
from streamd.service.image_schema import IMAGE_SCHEMA, IMAGES_SCHEMA
from streamd.service.members import MEMBER_SCHEMA, MEMBERS_SCHEMA
from streamd.service.metadefs_schemas import METADEF_SCHEMAS, TASK_SCHEMA, TASKS_SCHEMA

OPENAPI_PATH = "/openapi.json"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]
Operation = dict[str, Any]

# components/schemas name -> the served Glance document it is
_GLANCE_SCHEMAS: dict[str, Schema] = {
    "Image": IMAGE_SCHEMA, "Images": IMAGES_SCHEMA,
    "Member": MEMBER_SCHEMA, "Members": MEMBERS_SCHEMA,
    "Task": TASK_SCHEMA, "Tasks": TASKS_SCHEMA,
    **{"Metadef" + "".join(p.title() for p in name.split("_")): schema
       for name, schema in METADEF_SCHEMAS.items()},
}

ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "Every 4xx and 5xx answer: what was wrong and how to fix it.",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "code", "title"],
        "properties": {
            "message": {"type": "string"},
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "title": {"type": "string", "description": "the status's reason phrase"},
        },
    }},
}


def _embedded(name: str, schema: Schema) -> Schema:
    """A Glance schema as a component: its ``#/definitions/…`` references point into it."""
    text = json.dumps(schema).replace('"#/definitions/',
                                      f'"#/components/schemas/{name}/definitions/')
    return json.loads(text)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(name: str) -> Schema:
    """A Glance schema as a request body: an object (the schemas leave ``type`` out; the
    server refuses anything else with a 400)."""
    return {**_ref(name), "type": "object"}


OBJECT: Schema = {"type": "object"}
ERRORS = {
    "4XX": {"description": "The request cannot be served as sent (see the message).",
            "content": {JSON: {"schema": _ref("Error")}}},
    "5XX": {"description": "The server failed, or a store or the registry is unavailable; "
                           "retry later.",
            "content": {JSON: {"schema": _ref("Error")}}},
}


def _json(schema: Schema = OBJECT) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _op(tag: str, summary: str, responses: dict[str | int, Any], *,
        body: Schema | None = None, media: tuple[str, ...] = (JSON,),
        query: tuple[Schema, ...] = (), headers: tuple[Schema, ...] = ()) -> Operation:
    """One operation; ``responses`` by status: a description, or (description, content)."""
    answers: dict[str, Any] = {}
    for status, answer in responses.items():
        description, content = answer if isinstance(answer, tuple) else (answer, None)
        answers[str(status)] = {"description": description,
                                **({"content": content} if content else {})}
    operation: Operation = {"tags": [tag], "summary": summary,
                            "responses": {**answers, **ERRORS}}
    if query or headers:
        operation["parameters"] = [*query, *headers]
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {m: {"schema": body} for m in media}}
    return operation


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _header(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


_PAGING = (_query("limit", "page size (at most the server's api_limit_max)",
                  {"type": "integer", "minimum": 0}),
           _query("marker", "the id of the last item of the previous page"))
_IMAGE_QUERY = (
    *_PAGING,
    _query("sort", "key:dir pairs, comma separated (name:asc,created_at:desc)"),
    _query("sort_key", "name, status, container_format, disk_format, size, id, created_at or "
                       "updated_at"),
    _query("sort_dir", "asc or desc", {"type": "string", "enum": ["asc", "desc"]}),
    *(_query(f, "equal to, or in:a,b") for f in ("name", "status", "container_format",
                                                  "disk_format", "id")),
    *(_query(f, "equal to") for f in ("owner", "checksum", "os_hash_value")),
    _query("visibility", "public, private, shared, community or all"),
    _query("member_status", "accepted (default), pending, rejected or all"),
    _query("tag", "images with this tag"),
    *(_query(f, "true or false", {"type": "boolean"}) for f in ("protected", "os_hidden")),
    *(_query(f, "an integer", {"type": "integer"})
      for f in ("size_min", "size_max", "min_ram", "min_disk", "size")),
    *(_query(f, "gt:, gte:, lt:, lte:, eq:, neq: and an ISO 8601 time")
      for f in ("created_at", "updated_at")),
)
_STORE_HEADER = _header("X-Image-Meta-Store", "the store to write to (see /v2/info/stores)")

IMAGE_PATCH: Schema = {
    "type": "array",
    "description": "RFC 6902 operations on the image (add, remove, replace)",
    "items": {"type": "object", "required": ["op", "path"],
              "properties": {"op": {"type": "string", "enum": ["add", "remove", "replace"]},
                             "path": {"type": "string"},
                             "value": {}}},
}
IMPORT_REQUEST: Schema = {
    "type": "object", "required": ["method"],
    "properties": {
        "method": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string",
                     "enum": ["glance-direct", "web-download", "copy-image"]},
            "uri": {"type": "string"}}},
        "stores": {"type": "array", "items": {"type": "string"}},
        "all_stores": {"type": "boolean"},
        "all_stores_must_succeed": {"type": "boolean"},
    },
}
LOCATION_REQUEST: Schema = {
    "type": "object", "required": ["url"],
    "properties": {"url": {"type": "string"}, "validation_data": {
        "type": "object", "properties": {"os_hash_algo": {"type": "string"},
                                         "os_hash_value": {"type": "string"}}}},
}
TASK_REQUEST: Schema = {
    "type": "object", "required": ["type", "input"],
    "properties": {"type": {"type": "string", "enum": ["import"]}, "input": {
        "type": "object", "properties": {"import_from": {"type": "string"},
                                         "import_from_format": {"type": "string"},
                                         "image_properties": OBJECT}}},
}
MEMBER_CREATE: Schema = {"type": "object", "required": ["member"],
                         "properties": {"member": {"type": "string"}}}
MEMBER_UPDATE: Schema = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": ["pending", "accepted", "rejected"]}}}
TAGS_REQUEST: Schema = {"type": "object", "properties": {"tags": {
    "type": "array", "items": {"type": "object", "required": ["name"],
                               "properties": {"name": {"type": "string"}}}}}}
RESOURCE_TYPE_ASSOCIATION: Schema = {
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string"}, "prefix": {"type": "string"},
                   "properties_target": {"type": "string"}},
}


def _versions() -> dict[str, Any]:
    listing = ("the API versions", _json())
    return {
        "/": {"get": _op("versions", "the API versions (300 Multiple Choices, as Glance)",
                         {300: listing})},
        "/versions": {"get": _op("versions", "the API versions", {200: listing})},
        "/v2": {"get": _op("versions", "the API versions", {300: listing})},
        "/v2/": {"get": _op("versions", "the API versions", {300: listing})},
    }


def _images() -> dict[str, Any]:
    image = ("the image", _json(_ref("Image")))
    done = "done"
    return {
        "/v2/images": {
            "get": _op("images", "list images (filters, sorts, marker pagination)",
                       {200: ("a page of images", _json(_ref("Images")))}, query=_IMAGE_QUERY),
            "post": _op("images", "create an image record (no data yet)",
                        {201: image}, body=_body("Image")),
        },
        "/v2/images/{image_id}": {
            "get": _op("images", "show an image", {200: image}),
            "patch": _op("images", "update an image with a JSON patch", {200: image},
                         body=IMAGE_PATCH, media=PATCH_MEDIA_TYPES),
            "delete": _op("images", "delete an image and its data", {204: done}),
        },
        "/v2/images/{image_id}/tags/{tag}": {
            "put": _op("images", "add a tag", {204: done}),
            "delete": _op("images", "remove a tag", {204: done}),
        },
        "/v2/images/{image_id}/actions/deactivate": {
            "post": _op("images", "deactivate an image (admin)", {204: done})},
        "/v2/images/{image_id}/actions/reactivate": {
            "post": _op("images", "reactivate an image (admin)", {204: done})},
        "/v2/images/{image_id}/locations": {
            "get": _op("images", "the image's locations (service roles)",
                       {200: ("its locations", _json({"type": "array", "items": OBJECT}))}),
            "post": _op("images", "add a location (service roles)",
                        {202: "accepted: the location's data is hashed in the background"},
                        body=LOCATION_REQUEST),
        },
    }


def _data() -> dict[str, Any]:
    """The raw-ASGI data routes (``streamd.http.data``, ``streamd.http.staging``)."""
    octets = {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}
    ranged = (_header("Range", "bytes=A-B, bytes=A- or bytes=-N"),
              _header("If-Match", "the image data's ETag"))
    return {
        "/v2/images/{image_id}/file": {
            "get": _op("data", "download the image data (ranges too)", {
                200: ("the image data", octets), 204: "the image has no data",
                206: ("the range asked for", octets), 416: ("no such range", _json(
                    _ref("Error")))}, headers=ranged),
            "head": _op("data", "the download's headers", {
                200: "size, checksum and ETag", 204: "the image has no data",
                206: "the range's headers"}, headers=ranged),
            "put": _op("data", "upload the image data, streamed", {204: "stored"},
                       body={"type": "string", "format": "binary"}, media=(OCTET_STREAM,),
                       headers=(_STORE_HEADER,)),
        },
        "/v2/images/{image_id}/stage": {
            "put": _op("import", "stage data for glance-direct import (resumable with "
                                 "Content-Range)", {204: "staged"},
                       body={"type": "string", "format": "binary"}, media=(OCTET_STREAM,),
                       headers=(_header("Content-Range", "bytes START-END/TOTAL"),
                                _header("Upload-Part", "data or zero: a part of a parallel "
                                        "stage (transfer_extensions)",
                                        {"type": "string", "enum": ["data", "zero"]}))),
            "head": _op("import", "how much is staged (Upload-Offset, Upload-Length, "
                                  "Upload-Ranges)", {200: "the progress"}),
        },
    }


def _extensions() -> dict[str, Any]:
    """streamd's own (``streamd.http.extensions``); 404 when transfer_extensions is off."""
    return {
        "/v2/info/streamd": {"get": _op("extensions", "the extensions this server offers",
                                        {200: ("them", _json())})},
        "/v2/images/{image_id}/extents": {
            "get": _op("extensions", "the data and zero runs of an active image",
                       {200: ("size, zero_runs_known, xxh3 (of the data), extents", _json())})},
    }


def _sharing_and_import() -> dict[str, Any]:
    member = ("the membership", _json(_ref("Member")))
    tasks = ("the tasks", _json({"type": "object", "properties": {
        "tasks": {"type": "array", "items": OBJECT}}}))
    return {
        "/v2/images/{image_id}/members": {
            "get": _op("members", "the image's members",
                       {200: ("its members", _json(_ref("Members")))}),
            "post": _op("members", "share the image with a project", {200: member},
                        body=MEMBER_CREATE),
        },
        "/v2/images/{image_id}/members/{member_id}": {
            "get": _op("members", "show a membership", {200: member}),
            "put": _op("members", "accept or reject a shared image", {200: member},
                       body=MEMBER_UPDATE),
            "delete": _op("members", "stop sharing with a project", {204: "done"}),
        },
        "/v2/images/{image_id}/import": {
            "post": _op("import", "import data (glance-direct, web-download, copy-image)",
                        {202: "accepted: the import runs as a task"}, body=IMPORT_REQUEST,
                        headers=(_STORE_HEADER,))},
        "/v2/images/{image_id}/tasks": {
            "get": _op("import", "the image's import tasks", {200: tasks})},
        "/v2/info/import": {
            "get": _op("import", "the import methods offered", {200: ("them", _json())})},
        "/v2/tasks": {
            "get": _op("tasks", "list tasks", {200: ("a page of tasks", _json(_ref("Tasks")))},
                       query=(*_PAGING, _query("sort_key", "a task field"),
                              _query("sort_dir", "asc or desc"), _query("type", "import"),
                              _query("status", "a task status"))),
            "post": _op("tasks", "create an import task (the v2.0 interface)",
                        {201: ("the task", _json(_ref("Task")))}, body=TASK_REQUEST),
        },
        "/v2/tasks/{task_id}": {
            "get": _op("tasks", "show a task", {200: ("the task", _json(_ref("Task")))})},
    }


def _stores_and_cache() -> dict[str, Any]:
    listing = ("the listing", _json())
    return {
        "/v2/info/stores": {"get": _op("stores", "the stores", {200: listing})},
        "/v2/info/stores/detail": {
            "get": _op("stores", "the stores and their settings (admin)", {200: listing})},
        "/v2/info/usage": {"get": _op("stores", "the caller's quota usage", {200: listing})},
        "/v2/stores/{store_id}/{image_id}": {
            "delete": _op("stores", "delete an image's data from one store", {204: "done"})},
        "/v2/cache": {
            "get": _op("cache", "cached and queued images (admin)", {200: listing}),
            "delete": _op("cache", "empty the cache and/or the queue (admin)", {204: "done"},
                          headers=(_header("x-image-cache-clear-target", "cache or queue",
                                           {"type": "string", "enum": ["cache", "queue"]}),)),
        },
        "/v2/cache/{image_id}": {
            "put": _op("cache", "queue an image for caching (admin)", {202: "queued"}),
            "delete": _op("cache", "drop an image from the cache (admin)", {204: "done"}),
        },
        "/v2/cache/prune": {"post": _op("cache", "evict down to the size limit (admin)",
                                        {200: ("what was pruned", _json())})},
        "/v2/cache/clean": {"post": _op("cache", "remove stalled and invalid entries (admin)",
                                        {200: "cleaned"})},
    }


def _metadefs() -> dict[str, Any]:
    ns = "/v2/metadefs/namespaces/{namespace}"
    done = {204: "done"}

    def one(name: str) -> tuple[str, dict[str, Any]]:
        return (name, _json())

    return {
        "/v2/metadefs/namespaces": {
            "get": _op("metadefs", "list namespaces",
                       {200: one("a page of namespaces")},
                       query=(*_PAGING, _query("resource_types", "comma separated"),
                              _query("visibility", "public or private"),
                              _query("sort_key", "a namespace field"),
                              _query("sort_dir", "asc or desc"))),
            "post": _op("metadefs", "create a namespace (with its contents)",
                        {201: one("the namespace")}, body=_body("MetadefNamespace")),
        },
        ns: {
            "get": _op("metadefs", "show a namespace and its contents", {200: one("it")},
                       query=(_query("resource_type", "prefix property names for it"),)),
            "put": _op("metadefs", "update a namespace", {200: one("it")},
                       body=_body("MetadefNamespace")),
            "delete": _op("metadefs", "delete a namespace", done),
        },
        f"{ns}/properties": {
            "get": _op("metadefs", "list properties", {200: one("them")}),
            "post": _op("metadefs", "create a property", {201: one("it")},
                        body=_body("MetadefProperty")),
            "delete": _op("metadefs", "delete all properties", done),
        },
        f"{ns}/properties/{{prop}}": {
            "get": _op("metadefs", "show a property", {200: one("it")}),
            "put": _op("metadefs", "update a property", {200: one("it")},
                       body=_body("MetadefProperty")),
            "delete": _op("metadefs", "delete a property", done),
        },
        f"{ns}/objects": {
            "get": _op("metadefs", "list objects", {200: one("them")}),
            "post": _op("metadefs", "create an object", {201: one("it")},
                        body=_body("MetadefObject")),
            "delete": _op("metadefs", "delete all objects", done),
        },
        f"{ns}/objects/{{obj}}": {
            "get": _op("metadefs", "show an object", {200: one("it")}),
            "put": _op("metadefs", "update an object", {200: one("it")},
                       body=_body("MetadefObject")),
            "delete": _op("metadefs", "delete an object", done),
        },
        f"{ns}/tags": {
            "get": _op("metadefs", "list tags", {200: one("them")}),
            "post": _op("metadefs", "create tags (X-Openstack-Append: keep the others)",
                        {201: one("them")}, body=TAGS_REQUEST,
                        headers=(_header("X-Openstack-Append", "true: add to the tags",
                                         {"type": "boolean"}),)),
            "delete": _op("metadefs", "delete all tags", done),
        },
        f"{ns}/tags/{{tag}}": {
            "get": _op("metadefs", "show a tag", {200: one("it")}),
            "post": _op("metadefs", "create a tag", {201: one("it")}),
            "put": _op("metadefs", "rename a tag", {200: one("it")}, body=_body("MetadefTag")),
            "delete": _op("metadefs", "delete a tag", done),
        },
        f"{ns}/resource_types": {
            "get": _op("metadefs", "the namespace's resource type associations",
                       {200: one("them")}),
            "post": _op("metadefs", "associate a resource type", {201: one("it")},
                        body=RESOURCE_TYPE_ASSOCIATION),
        },
        f"{ns}/resource_types/{{resource_type}}": {
            "delete": _op("metadefs", "dissociate a resource type", done)},
        "/v2/metadefs/resource_types": {
            "get": _op("metadefs", "list resource types", {200: one("them")})},
    }


def _service() -> dict[str, Any]:
    schema = ("a JSON Schema", _json())
    return {
        "/v2/schemas/{name}": {"get": _op("schemas", "image(s), member(s), task(s)",
                                          {200: schema})},
        "/v2/schemas/metadefs/{name}": {
            "get": _op("schemas", "namespace(s), property/properties, object(s), tag(s), "
                                  "resource_type(s)", {200: schema})},
        "/metrics": {"get": _op("service", "Prometheus metrics (when metrics_bind is unset)", {
            200: ("the exposition", {"text/plain": {"schema": {"type": "string"}}})})},
        OPENAPI_PATH: {"get": _op("service", "this document",
                                  {200: ("OpenAPI 3.1", _json())})},
    }


_PARAM = re.compile(r"{(\w+)}")
_WORD = re.compile(r"\W+")

# What a created resource is next used for: (the operation that creates it, its status, the
# path parameters its answer fills, the operations they are filled in). OpenAPI links: a client
# (or a stateful fuzzer) follows them from the answer.
_IMAGE = "/v2/images/{image_id}"
_NS = "/v2/metadefs/namespaces/{namespace}"
_IN_NAMESPACE = "$request.path.namespace"
_LINKS: tuple[tuple[str, str, dict[str, str], tuple[str, ...]], ...] = (
    ("post /v2/images", "201", {"image_id": "$response.body#/id"}, (
        f"get {_IMAGE}", f"patch {_IMAGE}", f"delete {_IMAGE}", f"put {_IMAGE}/file",
        f"get {_IMAGE}/file", f"head {_IMAGE}/file", f"put {_IMAGE}/stage",
        f"head {_IMAGE}/stage", f"post {_IMAGE}/import", f"put {_IMAGE}/tags/{{tag}}",
        f"delete {_IMAGE}/tags/{{tag}}", f"get {_IMAGE}/members", f"post {_IMAGE}/members",
        f"get {_IMAGE}/tasks", f"get {_IMAGE}/locations", f"get {_IMAGE}/extents",
        f"post {_IMAGE}/actions/deactivate", f"post {_IMAGE}/actions/reactivate",
        "put /v2/cache/{image_id}", "delete /v2/cache/{image_id}")),
    (f"post {_IMAGE}/members", "200", {"image_id": "$request.path.image_id",
                                       "member_id": "$response.body#/member_id"}, (
        f"get {_IMAGE}/members/{{member_id}}", f"put {_IMAGE}/members/{{member_id}}",
        f"delete {_IMAGE}/members/{{member_id}}")),
    ("post /v2/metadefs/namespaces", "201", {"namespace": "$response.body#/namespace"}, (
        f"get {_NS}", f"put {_NS}", f"delete {_NS}", f"get {_NS}/objects",
        f"post {_NS}/objects", f"delete {_NS}/objects", f"get {_NS}/properties",
        f"post {_NS}/properties", f"delete {_NS}/properties", f"get {_NS}/tags",
        f"post {_NS}/tags", f"delete {_NS}/tags", f"post {_NS}/tags/{{tag}}",
        f"get {_NS}/resource_types", f"post {_NS}/resource_types")),
    (f"post {_NS}/objects", "201", {"namespace": _IN_NAMESPACE, "obj": "$response.body#/name"},
     (f"get {_NS}/objects/{{obj}}", f"put {_NS}/objects/{{obj}}",
      f"delete {_NS}/objects/{{obj}}")),
    (f"post {_NS}/properties", "201", {"namespace": _IN_NAMESPACE,
                                       "prop": "$response.body#/name"},
     (f"get {_NS}/properties/{{prop}}", f"put {_NS}/properties/{{prop}}",
      f"delete {_NS}/properties/{{prop}}")),
    (f"post {_NS}/tags/{{tag}}", "201", {"namespace": _IN_NAMESPACE,
                                         "tag": "$response.body#/name"},
     (f"get {_NS}/tags/{{tag}}", f"put {_NS}/tags/{{tag}}", f"delete {_NS}/tags/{{tag}}")),
    (f"post {_NS}/resource_types", "201", {"namespace": _IN_NAMESPACE,
                                           "resource_type": "$response.body#/name"},
     (f"delete {_NS}/resource_types/{{resource_type}}",)),
    ("post /v2/tasks", "201", {"task_id": "$response.body#/id"}, ("get /v2/tasks/{task_id}",)),
)


def operation_id(method: str, path: str) -> str:
    """``get /v2/images/{image_id}`` -> ``get_v2_images_image_id`` (``get_v2_slash`` for
    ``/v2/``, ``get`` for ``/``)."""
    slash = "_slash" if path.endswith("/") and path != "/" else ""
    return _WORD.sub("_", f"{method} {path}").strip("_") + slash


def _described(paths: dict[str, Any]) -> dict[str, Any]:
    """Path parameters, operation ids and links added to ``paths``."""
    for path, item in paths.items():
        names = _PARAM.findall(path)
        for method, operation in item.items():
            operation["operationId"] = operation_id(method, path)
        if names:
            item["parameters"] = [{"name": n, "in": "path", "required": True,
                                   "schema": {"type": "string", "minLength": 1}}
                                  for n in names]
    for source, status, parameters, targets in _LINKS:
        method, path = source.split(" ")
        response = paths[path][method]["responses"][status]
        links = {}
        for target in targets:
            target_method, target_path = target.split(" ")
            assert target_method in paths[target_path], target  # a link to what exists
            target_id = operation_id(target_method, target_path)
            links[target_id] = {"operationId": target_id, "parameters": {
                name: value for name, value in parameters.items()
                if f"{{{name}}}" in target_path}}
        response["links"] = links
    return paths


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once: it never changes while the server runs)."""
    paths = {**_versions(), **_images(), **_data(), **_sharing_and_import(), **_extensions(),
             **_stores_and_cache(), **_metadefs(), **_service()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamd: OpenStack Image API v2",
            "version": __version__,
            "description": (
                "Glance's Image API v2 as streamd serves it. Every path under /v2 is also "
                "served without the prefix (/images, /schemas, /info, /tasks, /metadefs, "
                "/cache). Every error is JSON: {\"error\": {\"message\", \"code\", "
                "\"title\"}}. Who asks comes from X-Auth-Token (auth = tokens or keystone) "
                "or, with auth = noauth, from X-Project-Id, X-User-Id and X-Roles."),
        },
        "servers": [{"url": "/"}],
        "security": [{}, {"token": []}],
        "paths": _described(paths),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA,
                        **{name: _embedded(name, schema)
                           for name, schema in _GLANCE_SCHEMAS.items()}},
            "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                          "name": "X-Auth-Token"}},
        },
    }


@functools.cache
def _serialised() -> str:
    return json.dumps(document())


@bp.get(OPENAPI_PATH)
async def openapi() -> Response:
    return Response(_serialised(), content_type=JSON)

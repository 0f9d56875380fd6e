"""``GET /v2/schemas/image(s)``, ``member(s)``, ``task(s)`` and ``metadefs/…``: the JSON
Schemas clients build on.

python-glanceclient downloads them before it creates or updates an image, validates with
them and derives its CLI options from them; they are the service's own validation schemas
(``streamd.service.image_schema``), so what a client is told and what the server checks
cannot drift apart. The metadefs and task schemas are Glance's own documents
(``streamd.service.metadefs_schemas``), which the metadefs routes validate with.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response

from streamd.errors import NotFound
from streamd.service.image_schema import IMAGE_SCHEMA, IMAGES_SCHEMA
from streamd.service.members import MEMBER_SCHEMA, MEMBERS_SCHEMA
from streamd.service.metadefs_schemas import METADEF_SCHEMAS, TASK_SCHEMA, TASKS_SCHEMA

bp = Blueprint("schemas", __name__)

# Serialised once: the schemas never change while the server runs.
_IMAGE = json.dumps(IMAGE_SCHEMA)
_IMAGES = json.dumps(IMAGES_SCHEMA)
_MEMBER = json.dumps(MEMBER_SCHEMA)
_MEMBERS = json.dumps(MEMBERS_SCHEMA)
_TASK = json.dumps(TASK_SCHEMA)
_TASKS = json.dumps(TASKS_SCHEMA)
_METADEFS = {name: json.dumps(schema) for name, schema in METADEF_SCHEMAS.items()}


@bp.get("/v2/schemas/image")
async def image() -> Response:
    return Response(_IMAGE, content_type="application/json")


@bp.get("/v2/schemas/images")
async def images() -> Response:
    return Response(_IMAGES, content_type="application/json")


@bp.get("/v2/schemas/member")
async def member() -> Response:
    return Response(_MEMBER, content_type="application/json")


@bp.get("/v2/schemas/members")
async def members() -> Response:
    return Response(_MEMBERS, content_type="application/json")


@bp.get("/v2/schemas/task")
async def task() -> Response:
    return Response(_TASK, content_type="application/json")


@bp.get("/v2/schemas/tasks")
async def tasks() -> Response:
    return Response(_TASKS, content_type="application/json")


@bp.get("/v2/schemas/metadefs/<name>")
async def metadef(name: str) -> Response:
    """namespace(s), property/properties, object(s), tag(s), resource_type(s)."""
    if name not in _METADEFS:
        raise NotFound(f"No schema metadefs/{name}: there are metadefs/"
                       f"{', metadefs/'.join(_METADEFS)}.")
    return Response(_METADEFS[name], content_type="application/json")

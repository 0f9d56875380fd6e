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
# the documents of /v2/schemas/<name>, serialized once
_SCHEMAS = {name: json.dumps(schema) for name, schema in (
    ("image", IMAGE_SCHEMA), ("images", IMAGES_SCHEMA), ("member", MEMBER_SCHEMA),
    ("members", MEMBERS_SCHEMA), ("task", TASK_SCHEMA), ("tasks", TASKS_SCHEMA))}
_METADEFS = {name: json.dumps(schema) for name, schema in METADEF_SCHEMAS.items()}


@bp.get("/v2/schemas/<name>")
async def schema(name: str) -> Response:
    """image(s), member(s), task(s)."""
    if name not in _SCHEMAS:
        raise NotFound(f"No schema {name}: there are {', '.join(_SCHEMAS)}.")
    return Response(_SCHEMAS[name], content_type="application/json")


@bp.get("/v2/schemas/metadefs/<name>")
async def metadef(name: str) -> Response:
    """namespace(s), property/properties, object(s), tag(s), resource_type(s)."""
    if name not in _METADEFS:
        raise NotFound(f"No schema metadefs/{name}: there are metadefs/"
                       f"{', metadefs/'.join(_METADEFS)}.")
    return Response(_METADEFS[name], content_type="application/json")

"""``GET /v2/schemas/image(s)`` and ``member(s)``: the JSON Schemas clients build on.

python-glanceclient downloads them before it creates or updates an image, validates with
them and derives its CLI options from them; they are the service's own validation schemas
(``streamd.service.image_schema``), so what a client is told and what the server checks
cannot drift apart.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response

from streamd.service.image_schema import IMAGE_SCHEMA, IMAGES_SCHEMA
from streamd.service.members import MEMBER_SCHEMA, MEMBERS_SCHEMA

bp = Blueprint("schemas", __name__)

# Serialised once: the schemas never change while the server runs.
_IMAGE = json.dumps(IMAGE_SCHEMA)
_IMAGES = json.dumps(IMAGES_SCHEMA)
_MEMBER = json.dumps(MEMBER_SCHEMA)
_MEMBERS = json.dumps(MEMBERS_SCHEMA)


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

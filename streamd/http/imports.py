"""Interoperable image import: ``GET /v2/info/import``, ``POST /v2/images/{id}/import`` and
``GET /v2/images/{id}/tasks``, in Glance's shapes.

The import request is checked and its task started by ``streamd.service.imports``; the
answer is Glance's 202 with no body, whether the import then succeeds or not (its outcome
is the image's status and ``os_glance_*`` properties, and the task's).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from streamd.http.bodies import json_body, json_response
from streamd.http.context import context, runtime
from streamd.http.tasks import image_task_view
from streamd.service import imports, tasks

bp = Blueprint("imports", __name__)

IMPORT_BODY = 'an import request, e.g. {"method": {"name": "glance-direct"}}'


@bp.get("/v2/info/import")
async def import_info() -> Response:
    return json_response({"import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": imports.enabled_methods(runtime()),
    }})


@bp.post("/v2/images/<image_id>/import")
async def import_image(image_id: str) -> Response:
    body = await json_body(IMPORT_BODY)
    await imports.start_import(runtime(), context(), image_id, body,
                               store_header=request.headers.get("X-Image-Meta-Store"))
    response = Response(b"", status=202)
    del response.headers["Content-Type"]
    return response


@bp.get("/v2/images/<image_id>/tasks")
async def image_tasks(image_id: str) -> Response:
    found = await tasks.image_tasks(runtime(), context(), image_id)
    return json_response({"tasks": [image_task_view(task) for task in found]})

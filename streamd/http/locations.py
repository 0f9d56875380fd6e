"""Image locations: ``POST`` and ``GET /v2/images/{id}/locations`` (Image API 2.17).

``streamd.service.locations`` checks and records a location; this maps it onto Glance's
answers: 202 with no body for an add (whether or not a verification job follows: its
outcome is the image's status and the ``location_import`` task), the list of
``{"url", "metadata"}`` for a read. Other methods on the path are 405, as in Glance.
"""

from __future__ import annotations

from quart import Blueprint, Response

from streamd.http.bodies import json_body, json_response
from streamd.http.context import context, runtime
from streamd.service import locations

bp = Blueprint("locations", __name__)

ADD_BODY = ('a location, e.g. {"url": "https://…/image.raw", "validation_data": '
            '{"os_hash_algo": "sha512", "os_hash_value": "…"}}')


@bp.post("/v2/images/<image_id>/locations")
async def add(image_id: str) -> Response:
    await locations.add_location(runtime(), context(), image_id, await json_body(ADD_BODY))
    response = Response(b"", status=202)
    del response.headers["Content-Type"]
    return response


@bp.get("/v2/images/<image_id>/locations")
async def index(image_id: str) -> Response:
    return json_response(await locations.list_locations(runtime(), context(), image_id))

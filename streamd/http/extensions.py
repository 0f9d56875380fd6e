"""streamd's extensions next to the Image API, and how a client finds them.

``GET /v2/info/streamd`` says which extensions this server offers (404 when
``transfer_extensions`` is off, as on Glance, so a client falls back to plain Image API calls);
``GET /v2/images/{id}/extents`` lists the data and zero runs of an image
(``streamd.service.extents``). The parallel stage itself is on the stage route
(``streamd.http.staging``).
"""

from __future__ import annotations

from quart import Blueprint, Response

from streamd.http.bodies import json_response
from streamd.http.context import context, runtime
from streamd.service import extents, stage_parts

bp = Blueprint("extensions", __name__)

# what GET /v2/info/streamd describes; a client reads the names, not the prose
EXTENSIONS = {
    "parallel_stage": {
        "route": "/v2/images/{image_id}/stage",
        "description": "PUT parts at any offset from several connections (Upload-Part: data "
                       "with Content-Range: bytes START-END/TOTAL, or Upload-Part: zero with "
                       "no body); each part durable when answered; HEAD lists what is staged "
                       "(Upload-Ranges); POST …/import (glance-direct) hashes the whole.",
        "part_header": "Upload-Part",
        "ranges_header": "Upload-Ranges",
        "zero_parts": True,
    },
    "extents": {
        "route": "/v2/images/{image_id}/extents",
        "description": "GET the data and zero runs of an active image: {size, "
                       "zero_runs_known, xxh3, extents: [{start, length, zero}]}; xxh3: "
                       "the xxh3-128 of the data as recorded at upload (null if none).",
        "digest": "xxh3_128",
    },
}


@bp.get("/v2/info/streamd")
async def info() -> Response:
    stage_parts.ensure_enabled(runtime(), "GET /v2/info/streamd")
    return json_response({"extensions": EXTENSIONS})


@bp.get("/v2/images/<image_id>/extents")
async def image_extents(image_id: str) -> Response:
    found = await extents.image_extents(runtime(), context(), image_id)
    return json_response({"size": found.size, "zero_runs_known": found.zero_runs_known,
                          "xxh3": found.xxh3,
                          "extents": [e.to_json() for e in found.extents]})

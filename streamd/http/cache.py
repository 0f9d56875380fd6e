"""Glance's cache API (``/v2/cache``, API 2.14; prune and clean 2.18), admin-only.

``GET /v2/cache``: ``{"cached_images": [...], "queued_images": [...]}``;
``PUT /v2/cache/{image_id}``: 202 (queued, and the prefetcher woken: "cache now");
``DELETE /v2/cache/{image_id}``: 204; ``DELETE /v2/cache``: 204, the entries and/or the
queue (``x-image-cache-clear-target``: ``cache``, ``queue`` or empty);
``POST /v2/cache/prune``: ``{"total_files_pruned", "total_bytes_pruned"}``;
``POST /v2/cache/clean``: 200, no body. The statuses and messages are Glance 33's
(``tests/glance_recordings/cache.json``); ``streamd.service.cache`` decides them. The cache is
this node's, as in Glance: behind a load balancer each node answers for its own.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from streamd.http.bodies import json_response, no_content
from streamd.http.context import context, runtime
from streamd.service import cache

bp = Blueprint("cache", __name__)


@bp.get("/v2/cache")
async def listing() -> Response:
    return json_response(cache.listing(runtime(), context()))


@bp.put("/v2/cache/<image_id>")
async def queue(image_id: str) -> Response:
    await cache.queue(runtime(), context(), image_id)
    return Response("", status=202)


@bp.delete("/v2/cache/<image_id>")
async def delete(image_id: str) -> Response:
    await cache.delete(runtime(), context(), image_id)
    return no_content()


@bp.delete("/v2/cache")
async def clear() -> Response:
    await cache.clear(runtime(), context(), request.headers.get("x-image-cache-clear-target"))
    return no_content()


@bp.post("/v2/cache/prune")
async def prune() -> Response:
    return json_response(await cache.prune(runtime(), context()))


@bp.post("/v2/cache/clean")
async def clean() -> Response:
    await cache.clean(runtime(), context())
    return Response("", status=200)

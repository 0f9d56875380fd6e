"""``GET /metrics``: the server's counters in the Prometheus text format (prometheus-client's
default registry: the cache's hits, misses, bytes by source, fills, evictions, and the
process collector). Per process, like the cache. Asked like any other route (a scraper
under ``tokens`` or ``keystone`` sends a token); nothing in it names an image or a project."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from quart import Blueprint, Response

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

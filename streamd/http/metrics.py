"""``GET /metrics``: the server's figures in the Prometheus text format (prometheus-client's
default registry), per process.

What an operator watches:
- ``streamd_http_requests_total{method,route,status}`` and the latency histogram
  ``streamd_http_request_seconds{method,route}`` (until the last byte of the answer went
  out: a download's seconds are its transfer time);
- ``streamd_http_received_bytes_total{route}`` / ``streamd_http_sent_bytes_total{route}``:
  request and response bodies, image data included (counted in the request's own frame and
  added once when it ends: a counter per request, not per chunk);
- ``streamd_transfers_in_flight`` (uploads, downloads and stages holding one of the
  ``max_transfers`` slots), ``streamd_db_threads_busy`` and
  ``streamd_db_pool_connections{state="in_use|idle"}``;
- per store, ``streamd_store_bytes_total{store,op}`` and
  ``streamd_store_errors_total{store,op,cause}`` (``streamd.service.transfer_metrics``);
- the read-through cache's counters (``streamd.service.node_cache``) and the process
  collector's CPU and memory.

Routes are labelled with their template (``/v2/images/{image_id}/file``), never with ids or
names, so that a label never names an image or a project. ``metrics_bind`` turns the route
off (``off``) or serves it only on its own address (``streamd.http.metrics.serve_metrics``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from quart import Blueprint, Response

from streamd.http.errors import error_body
from streamd.http.rawasgi import ASGIApp, Receive, Scope, Send
from streamd.service.runtime import Runtime

bp = Blueprint("metrics", __name__)

METRICS_PATH = "/metrics"

REQUESTS = Counter("streamd_http_requests", "HTTP requests answered, by route and status",
                   ["method", "route", "status"])
LATENCY = Histogram(
    "streamd_http_request_seconds", "Seconds from a request's arrival to its last byte sent",
    ["method", "route"],
    # metadata calls take milliseconds, image data seconds to minutes
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
RECEIVED = Counter("streamd_http_received_bytes", "Request body bytes received", ["route"])
SENT = Counter("streamd_http_sent_bytes", "Response body bytes sent", ["route"])
IN_FLIGHT = Gauge("streamd_transfers_in_flight",
                  "Uploads, downloads and stages holding a max_transfers slot now")
DB_THREADS = Gauge("streamd_db_threads_busy", "Registry calls running in worker threads now")
DB_POOL = Gauge("streamd_db_pool_connections", "Registry database connections by state",
                ["state"])

# (pattern of the path, its label): the API's routes with their variable parts named
_ID = r"[^/]+"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), label) for pattern, label in (
        (rf"/v2/images/{_ID}", "/v2/images/{image_id}"),
        (rf"/v2/images/{_ID}/(file|stage|import|tasks|members|locations)",
         "/v2/images/{image_id}/\\1"),
        (rf"/v2/images/{_ID}/members/{_ID}", "/v2/images/{image_id}/members/{member_id}"),
        (rf"/v2/images/{_ID}/tags/{_ID}", "/v2/images/{image_id}/tags/{tag}"),
        (rf"/v2/images/{_ID}/actions/(deactivate|reactivate)",
         "/v2/images/{image_id}/actions/\\1"),
        (rf"/v2/tasks/{_ID}", "/v2/tasks/{task_id}"),
        (r"/v2/cache/(prune|clean)", "/v2/cache/\\1"),
        (rf"/v2/cache/{_ID}", "/v2/cache/{image_id}"),
        (r"/v2/schemas/(.+)", "/v2/schemas/\\1"),
        (rf"/v2/metadefs/namespaces/{_ID}", "/v2/metadefs/namespaces/{namespace}"),
        (rf"/v2/metadefs/namespaces/{_ID}/(objects|properties|tags|resource_types)",
         "/v2/metadefs/namespaces/{namespace}/\\1"),
        (rf"/v2/metadefs/namespaces/{_ID}/(objects|properties|tags|resource_types)/{_ID}",
         "/v2/metadefs/namespaces/{namespace}/\\1/{name}"),
    )
)
_FIXED = frozenset({
    "/", "/versions", "/v2", "/v2/", "/v2/images", "/v2/tasks", "/v2/cache", "/v2/info/import",
    "/v2/info/stores", "/v2/info/stores/detail", "/v2/info/usage", "/v2/metadefs/namespaces",
    "/v2/metadefs/resource_types", METRICS_PATH,
})
_SCHEMA_NAMES = re.compile(r"[a-z_/-]{1,64}")  # /v2/schemas/metadefs/namespaces …


def route_of(path: str) -> str:
    """The route template a path belongs to; ``other`` for a path of no route (a scanner's
    404s must not grow a label per path)."""
    if path in _FIXED:
        return path
    for pattern, label in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if label.startswith("/v2/schemas/") and not _SCHEMA_NAMES.fullmatch(match[1]):
                return "other"
            return match.expand(label)
    return "other"


def instrument(app: ASGIApp) -> ASGIApp:
    """``app`` counting each HTTP request once it is over: route, status, seconds, bytes."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_of(scope["path"])
        status = 0
        received = sent = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.zerocopysend":
                sent += message.get("count") or 0
            await send(message)

        try:
            await app(scope, counting_receive, counting_send)
        finally:
            method = scope["method"]
            REQUESTS.labels(method, route, str(status or 500)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - start)
            if received:
                RECEIVED.labels(route).inc(received)
            if sent:
                SENT.labels(route).inc(sent)

    return counted


def watch_runtime(rt: Runtime) -> None:
    """Read the runtime's gauges when scraped (the last runtime built in this process)."""
    IN_FLIGHT.set_function(lambda: rt.transfers.active)
    DB_THREADS.set_function(lambda: rt.db_limiter.borrowed_tokens)
    pool = rt.registry.engine.pool
    # QueuePool (PostgreSQL, MySQL, SQLite files) counts its connections; others do not
    in_use = getattr(pool, "checkedout", None)
    idle = getattr(pool, "checkedin", None)
    if in_use is not None and idle is not None:
        DB_POOL.labels("in_use").set_function(in_use)
        DB_POOL.labels("idle").set_function(idle)


def scrape() -> bytes:
    return generate_latest(REGISTRY)


@bp.get(METRICS_PATH)
async def metrics() -> Response:
    return Response(scrape(), content_type=CONTENT_TYPE_LATEST)


def metrics_app() -> ASGIApp:
    """A tiny ASGI app serving only ``GET /metrics`` (every other path: a JSON 404), for
    ``metrics_bind = "HOST:PORT"``: scrapers reach it without the API's authentication."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            while True:
                event = (await receive())["type"]  # lifespan.startup or lifespan.shutdown
                await send({"type": f"{event}.complete"})
                if event == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            status, body, kind = 200, scrape(), CONTENT_TYPE_LATEST
        else:
            status, kind = 404, "application/json"
            body = error_body(404, f"This address serves only GET {METRICS_PATH}")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    return app

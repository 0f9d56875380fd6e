"""``PUT/HEAD /v2/images/{id}/stage``: staging image data for an import, resumable.

A raw ASGI data route like ``…/file`` (``streamd.http.data``), with the same body adapter:
the body moves only as fast as the staging pipeline takes it. As Glance: ``PUT`` with
``Content-Type: application/octet-stream`` answers 204 (415 for another type, 409 for an
image that cannot be staged into). Beyond Glance (``streamd.service.staging``):

- ``HEAD`` answers 200 with ``Upload-Offset`` (and ``Content-Length``): the bytes staged so
  far, where a resumed ``PUT`` starts; ``Upload-Length`` once the total is known;
- ``PUT`` with ``Content-Range: bytes START-END/TOTAL`` appends bytes START..END of a
  TOTAL-byte image; 416 with ``Upload-Offset`` when START is not the staged size;
- every 204 carries ``Upload-Offset`` (and ``Upload-Length`` when known).

``docs/openapi-staging.yaml`` documents it.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from streamd.auth import Authenticator
from streamd.errors import BadRequest, MethodNotAllowed
from streamd.http.app import DATA_ROUTES, ASGIApp
from streamd.http.data import (
    DataRequest,
    Receive,
    Send,
    _answer,
    _content_length,
    require_octet_stream,
)
from streamd.service import staging
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

STAGE_PATH = re.compile(r"/v2/images/(?P<image_id>[^/]+)/stage")
ALLOWED = "HEAD, PUT"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)")


def parse_content_range(value: str | None) -> staging.ContentRange | None:
    """``bytes START-END/TOTAL`` (END inclusive, START <= END < TOTAL); 400 otherwise."""
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise BadRequest(f"Content-Range {value!r} is not of the form bytes START-END/TOTAL "
                         "(e.g. bytes 1048576-2097151/5000000)")
    start, end, total = (int(g) for g in match.groups())
    if not start <= end < total:
        raise BadRequest(f"Content-Range {value!r}: START <= END < TOTAL must hold")
    return staging.ContentRange(start, end, total)


def progress_headers(progress: staging.StageProgress) -> list[tuple[str, str]]:
    headers = [("upload-offset", str(progress.staged))]
    if progress.total is not None:
        headers.append(("upload-length", str(progress.total)))
    return headers


def stage_handler(rt: Runtime, auth: Authenticator) -> ASGIApp:
    """The ASGI handler of ``/v2/images/{id}/stage``; ``auth`` says who is asking."""

    async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        request = DataRequest.of(rt, STAGE_PATH, scope, receive, send)
        image_id, method, headers = request.image_id, request.method, request.headers
        body, response = request.body, request.response
        try:
            ctx = await auth.authenticate(headers)
            if method == "PUT":
                require_octet_stream(headers, "stage image data")
                progress = await staging.stage(
                    rt, ctx, image_id, body, size=_content_length(headers),
                    content_range=parse_content_range(headers.get("content-range")),
                )
                done = functools.partial(response.empty, 204, progress_headers(progress))
            elif method == "HEAD":
                progress = await staging.progress(rt, ctx, image_id)
                done = functools.partial(response.empty, 200, [
                    ("content-length", str(progress.staged)), *progress_headers(progress)])
            else:
                raise MethodNotAllowed(f"{method} is not allowed on staged image data; use "
                                       f"{ALLOWED}", headers={"Allow": ALLOWED})
        except Exception as exc:
            await _answer(body, functools.partial(response.error, exc))
            return
        await _answer(body, done)

    return handle


DATA_ROUTES.append((STAGE_PATH, stage_handler))

"""``PUT/HEAD /v2/images/{id}/stage``: staging image data for an import, resumable.

A raw ASGI data route like ``…/file`` (``streamd.http.data``), built from the same toolkit
(``streamd.http.rawasgi``): the body moves only as fast as the staging pipeline takes it. As
Glance: ``PUT`` with ``Content-Type: application/octet-stream`` answers 204 (415 for another
type, 409 for an image that cannot be staged into). Beyond Glance (``streamd.service.staging``):

- ``HEAD`` answers 200 with ``Upload-Offset`` (and ``Content-Length``): the bytes staged so
  far, where a resumed ``PUT`` starts; ``Upload-Length`` once the total is known;
- ``PUT`` with ``Content-Range: bytes START-END/TOTAL`` appends bytes START..END of a
  TOTAL-byte image; 416 with ``Upload-Offset`` when START is not the staged size;
- every 204 carries ``Upload-Offset`` (and ``Upload-Length`` when known).

``docs/openapi-staging.yaml`` documents it.
"""

from __future__ import annotations

import functools
import re

from streamd.auth import Authenticator
from streamd.context import RequestContext
from streamd.errors import BadRequest
from streamd.http.rawasgi import (
    ASGIApp,
    DataRequest,
    Respond,
    content_length,
    data_handler,
    require_octet_stream,
)
from streamd.service import staging
from streamd.service.runtime import Runtime

STAGE_PATH = re.compile(r"/v2/images/(?P<image_id>[^/]+)/stage")
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
    """Where a resumed ``PUT`` starts (``Upload-Offset``) and, once known, the total."""
    headers = [("upload-offset", str(progress.staged))]
    if progress.total is not None:
        headers.append(("upload-length", str(progress.total)))
    return headers


def stage_handler(rt: Runtime, auth: Authenticator) -> ASGIApp:
    """The ASGI handler of ``/v2/images/{id}/stage``; ``auth`` says who is asking."""

    async def put(request: DataRequest, ctx: RequestContext) -> Respond:
        require_octet_stream(request.headers, "stage image data")
        progress = await staging.stage(
            rt, ctx, request.image_id, request.body, size=content_length(request.headers),
            content_range=parse_content_range(request.headers.get("content-range")),
        )
        return functools.partial(request.response.empty, 204, progress_headers(progress))

    async def head(request: DataRequest, ctx: RequestContext) -> Respond:
        progress = await staging.progress(rt, ctx, request.image_id)
        return functools.partial(request.response.empty, 200, [
            ("content-length", str(progress.staged)), *progress_headers(progress)])

    return data_handler(STAGE_PATH, {"HEAD": head, "PUT": put}, auth=auth,
                        idle_timeout=rt.settings.upload_idle_timeout,
                        resource="staged image data")

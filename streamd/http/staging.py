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

streamd's parallel stage (``streamd.service.stage_parts``; ``transfer_extensions``):

- ``PUT`` with ``Upload-Part: data`` and ``Content-Range: bytes START-END/TOTAL`` stages
  those bytes wherever they belong, from any number of connections at once; ``Upload-Part:
  zero`` (no body) declares the range zeros. 204 once the part is durable, with
  ``Upload-Ranges`` (what is staged: ``0-1048575,4194304-5242879``, END inclusive);
- ``HEAD`` answers ``Upload-Ranges`` for either kind of stage; for a parallel one
  ``Upload-Offset`` is the staged bytes from 0 without a gap.

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
    Headers,
    Respond,
    content_length,
    data_handler,
    require_octet_stream,
)
from streamd.io.stage_parts import PartsState, format_ranges
from streamd.service import stage_parts, staging
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


def parts_headers(state: PartsState) -> list[tuple[str, str]]:
    """What a parallel stage holds: its ranges, its gap-free prefix and its total."""
    return [("upload-ranges", format_ranges(state.ranges)),
            ("upload-offset", str(state.prefix)), ("upload-length", str(state.total))]


def parse_part(headers: Headers) -> stage_parts.Part:
    """``Upload-Part: data|zero`` with its ``Content-Range``; 400 otherwise."""
    kind = (headers.get("upload-part") or "").strip().lower()
    if kind not in ("data", "zero"):
        raise BadRequest(f"Upload-Part {kind!r} is not 'data' or 'zero'")
    content_range = parse_content_range(headers.get("content-range"))
    if content_range is None:
        raise BadRequest("A part (Upload-Part) needs Content-Range: bytes START-END/TOTAL")
    size = content_length(headers)
    expected = 0 if kind == "zero" else content_range.length
    if size is not None and size != expected:
        raise BadRequest(f"Content-Length {size} does not match the part: "
                         f"{expected} bytes expected for Upload-Part: {kind}")
    return stage_parts.Part(start=content_range.start, length=content_range.length,
                            total=content_range.total, zero=kind == "zero")


def stage_handler(rt: Runtime, auth: Authenticator) -> ASGIApp:
    """The ASGI handler of ``/v2/images/{id}/stage``; ``auth`` says who is asking."""

    async def put(request: DataRequest, ctx: RequestContext) -> Respond:
        if request.headers.get("upload-part") is not None:
            stage_parts.ensure_enabled(rt, "Staging in parts (Upload-Part)")
            part = parse_part(request.headers)
            if not part.zero:
                require_octet_stream(request.headers, "stage image data")
            state = await stage_parts.stage_part(rt, ctx, request.image_id, request.body, part)
            return functools.partial(request.response.empty, 204, parts_headers(state))
        require_octet_stream(request.headers, "stage image data")
        await stage_parts.ensure_no_parts(rt, request.image_id)
        progress = await staging.stage(
            rt, ctx, request.image_id, request.body, size=content_length(request.headers),
            content_range=parse_content_range(request.headers.get("content-range")),
        )
        return functools.partial(request.response.empty, 204, progress_headers(progress))

    async def head(request: DataRequest, ctx: RequestContext) -> Respond:
        progress = await staging.progress(rt, ctx, request.image_id)
        parts = await stage_parts.sealable(rt, request.image_id)
        if parts is not None:
            return functools.partial(request.response.empty, 200, [
                ("content-length", str(parts.staged)), *parts_headers(parts)])
        headers = progress_headers(progress)
        if rt.settings.transfer_extensions:
            headers.append(("upload-ranges", f"0-{progress.staged - 1}" if progress.staged
                            else ""))
        return functools.partial(request.response.empty, 200, [
            ("content-length", str(progress.staged)), *headers])

    return data_handler(STAGE_PATH, {"HEAD": head, "PUT": put}, auth=auth,
                        idle_timeout=rt.settings.upload_idle_timeout,
                        resource="staged image data")

"""``PUT/GET/HEAD /v2/images/{id}/file``: image data as raw ASGI handlers.

They bypass Quart on purpose (see ``streamd.http.app``): the request body is pulled with
``receive()`` only when the upload pipeline asks for more (``streamd.http.rawasgi``), so a
slow store slows the client instead of filling memory, and the response body is sent chunk by
chunk with ``send()``, with no response timeout, however long the download takes.

This module only maps HTTP onto the service layer: headers in, status codes and headers out.
What Glance answers is the reference: 415 unless ``Content-Type: application/octet-stream``,
204 for an upload and for the download of an image without data, ``Content-MD5`` (the md5 as
hex) on every download, 206 + ``Content-Range`` for a range, 413 when the store is full.
Beyond Glance: ``ETag`` (the md5, quoted) with ``If-Match``/``If-None-Match``/``If-Range``,
``Content-Range: bytes */size`` on 416, ``HEAD``.

Copies per byte (hypercorn 0.18, h11 0.16). Upload, 6: hypercorn turns each socket read
into ``bytes``; h11 appends it to its receive buffer and slices it out twice (one slice
only tests for emptiness); hypercorn ``bytes()``-copies h11's ``Data``; ``RequestBody``
copies into the pipeline's buffer, the only copy made here. All of hypercorn's and h11's
together cost ~0.65 s of CPU per GiB at 512 KiB reads (``streamd.server.SOCKET_READ``, now
128 KiB to keep a connection small).
Download of a local file (the file store) under anycorn, on plaintext HTTP/1.1: 0, with
``os.sendfile`` (``http.response.zerocopysend``) one window at a time. Otherwise (an object
store, hypercorn, and later TLS or HTTP/2), 1: the server ``bytes()``-copies each body it is
given, so a ``memoryview`` of the store's reused buffer costs the same as ``bytes`` would,
and is sent as is. Each download logs one ``DOWNLOAD`` line saying which way it went.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator

import trio

from streamd.auth import Authenticator
from streamd.context import RequestContext
from streamd.errors import StreamdError
from streamd.http.rawasgi import (
    OCTET_STREAM,
    ASGIApp,
    DataRequest,
    Receive,
    Respond,
    Response,
    content_length,
    data_handler,
    require_octet_stream,
)
from streamd.io import ObjectNotFound, OpenFile, parse_byte_range
from streamd.registry import ImageRecord
from streamd.service import downloads, transfers
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

FILE_PATH = re.compile(r"/v2/images/(?P<image_id>[^/]+)/file")
# windows sent by one sendfile when their bytes are all in the page cache (``_send_file``)
CACHED_WINDOWS = 8


class PreconditionFailed(StreamdError):
    """If-Match does not name the image data's ETag: the client holds another version."""

    status = 412


def file_handler(rt: Runtime, auth: Authenticator) -> ASGIApp:
    """The ASGI handler of ``/v2/images/{id}/file``; ``auth`` says who is asking."""

    async def put(request: DataRequest, ctx: RequestContext) -> Respond:
        require_octet_stream(request.headers, "send image data")
        await transfers.upload(rt, ctx, request.image_id, request.body,
                               size=content_length(request.headers),
                               store_id=request.headers.get("x-image-meta-store"))
        return functools.partial(request.response.empty, 204)

    async def get(request: DataRequest, ctx: RequestContext) -> None:
        await _get(rt, ctx, request, head=False)

    async def head(request: DataRequest, ctx: RequestContext) -> None:
        await _get(rt, ctx, request, head=True)

    return data_handler(FILE_PATH, {"GET": get, "HEAD": head, "PUT": put}, auth=auth,
                        idle_timeout=rt.settings.upload_idle_timeout, resource="image data")


# -- download ----------------------------------------------------------------------------------


async def _get(rt: Runtime, ctx: RequestContext, request: DataRequest, *, head: bool) -> None:
    headers, response = request.headers, request.response
    record = await downloads.image_for_download(rt, ctx, request.image_id)
    if record.location is None or record.size is None:
        await response.empty(204)  # Glance: an image without data answers 204
        return
    size = record.size
    etag = f'"{record.checksum}"' if record.checksum else None
    common = [("content-type", OCTET_STREAM), ("accept-ranges", "bytes")]
    if record.checksum:
        common.append(("content-md5", record.checksum))  # hex, as Glance and glanceclient
    if etag:
        common.append(("etag", etag))

    if_match = headers.get("if-match")
    if if_match is not None and not _matches(if_match, etag, weak=False):
        raise PreconditionFailed(
            f"The image data's ETag is {etag or 'unknown'}, not one that If-Match names"
        )
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, etag, weak=True):
        await response.empty(304, [h for h in common if h[0] == "etag"])
        return

    byte_range = None
    range_header = headers.get("range")
    if range_header is not None and _if_range_holds(headers.get("if-range"), etag):
        byte_range = parse_byte_range(range_header, size)  # RangeNotSatisfiable: 416
    if byte_range is None:
        status, offset, length = 200, 0, size
        out = common
    else:
        offset, length = byte_range
        status = 206
        out = [*common, ("content-range", f"bytes {offset}-{offset + length - 1}/{size}")]
    out.append(("content-length", str(length)))

    if head or length == 0:
        await response.empty(status, out)
        return
    zero_copy = request.zero_copy and rt.settings.zero_copy
    async with downloads.open_download(rt, record, offset, length,
                                       zero_copy=zero_copy) as download:
        if download.file is not None:
            await response.start(status, out)
            via = "sendfile"
            sent = await _send_file(download.file, offset, length, request.receive, response,
                                    window=rt.settings.sendfile_window)
        else:
            assert download.chunks is not None
            via = "stream"
            sent = await _stream(record, download.chunks, length, status, out, request.receive,
                                 response)
    if sent is not None:
        log.info("DOWNLOAD image=%s offset=%d length=%d sent=%d via=%s%s", record.id, offset,
                 length, sent, via, "" if sent == length else " stopped: client gone")


async def _send_file(
    file: OpenFile, offset: int, length: int, receive: Receive, response: Response, *,
    window: int,
) -> int:
    """Send ``[offset, offset + length)`` of ``file`` with ``os.sendfile``, one window at a
    time; return how many bytes went out (fewer if the client went away).

    Windows, not one call: the server sends each window whole before it looks at anything
    else, so a window bounds how late a disconnect is noticed; and while one goes out the
    kernel is already reading the next (``will_need``), so a file that is not in the page
    cache does not stall every window on the disk. Bytes already in the page cache (a boot
    storm) go ``CACHED_WINDOWS`` windows at a time: each window is a trip to a worker
    thread and back, and while the thread is away the socket drains. Measured, 8 clients
    downloading 8 cached 1 GiB images at once, alternating servers, 12 runs each (AMD, 2
    cores, a noisy host): one window per call 1725-3406 MiB/s (median 2205) at 0.35-0.69
    server CPU-s/GiB; up to 8 windows per call 1970-3621 (median 2833) at 0.31-0.55. A cold
    file still goes a window at a time (one download after drop_caches: 493-972 MiB/s
    either way, no difference seen through the noise).
    """
    position, end = offset, offset + length
    file.will_need(position, min(window, length))
    reached_last = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        # OSError: the server found the client gone before its http.disconnect came here
        with contextlib.suppress(OSError):
            while (step := _step(file, position, end, window)) < end - position:
                file.will_need(position + step, min(window, end - position - step))
                await response.sendfile(file, position, step, more=True)
                position += step
            reached_last = True
        nursery.cancel_scope.cancel()
    if not reached_last:
        return position - offset  # the client went away
    # the last window ends the response, outside the watch: a client that has it all may
    # go away before the call returns, and that is no reason to count it short
    try:
        await response.sendfile(file, position, end - position, more=False)
    except OSError:
        return position - offset
    return length


def _step(file: OpenFile, position: int, end: int, window: int) -> int:
    """The bytes of the next ``sendfile``: one window, or up to ``CACHED_WINDOWS`` of them
    when the page cache holds both ends of that span."""
    span = min(end - position, window * CACHED_WINDOWS)
    if span > window and file.cached(position, span):
        return span
    return window


async def _stream(
    record: ImageRecord,
    chunks: AsyncIterator[memoryview | bytes],
    length: int,
    status: int,
    headers: list[tuple[str, str]],
    receive: Receive,
    response: Response,
) -> int | None:
    """Send the chunks as they come; stop if the client goes away. Returns how many bytes
    went out, or None when nothing was (the data is missing: 204, as Glance).

    The first chunk is read before the response starts, so that a store failure can still
    be answered with a status (as Glance: 204 if the data is missing, 503 if the store fails).
    """
    sent = 0
    try:
        first = await anext(chunks)
    except ObjectNotFound:
        log.error("image %s is active but its data is missing from store %s",
                  record.id, record.store)
        await response.empty(204)
        return None
    await response.start(status, headers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        await response.body(first, more=True)
        sent += len(first)
        async for chunk in chunks:
            await response.body(chunk, more=True)
            sent += len(chunk)
        nursery.cancel_scope.cancel()
    if sent == length:
        await response.body(b"", more=False)
    return sent


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Cancel the download when the client goes away (a GET's body is empty: the next
    message after it is ``http.disconnect``)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _matches(header: str, etag: str | None, *, weak: bool) -> bool:
    """Does an If-Match (strong) or If-None-Match (weak) header name ``etag``?"""
    if etag is None:
        return False
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if weak:
            tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


def _if_range_holds(if_range: str | None, etag: str | None) -> bool:
    """A Range applies unless If-Range names another representation (or a date: we send
    no Last-Modified, so a date can not be proved current and the whole image is sent)."""
    if if_range is None:
        return True
    return etag is not None and if_range.strip() == etag


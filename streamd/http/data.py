"""``PUT/GET/HEAD /v2/images/{id}/file``: image data as raw ASGI handlers.

They bypass Quart on purpose (see ``streamd.http.app``): the request body is pulled with
``receive()`` only when the upload pipeline asks for more (``RequestBody``), so a slow store
slows the client instead of filling memory, and the response body is sent chunk by chunk with
``send()``, with no response timeout, however long the download takes.

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
Download, 1: hypercorn ``bytes()``-copies each body it is given, so a ``memoryview`` of the
store's reused buffer costs the same as ``bytes`` would, and is sent as is.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from streamd.auth import Authenticator
from streamd.context import RequestContext
from streamd.errors import MethodNotAllowed, StreamdError, UnsupportedMediaType
from streamd.http.app import DATA_ROUTES, ASGIApp
from streamd.http.errors import describe, error_body
from streamd.io import ObjectNotFound, SourceAborted, StoreFull, parse_byte_range
from streamd.registry import ImageRecord
from streamd.service import transfers
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

FILE_PATH = re.compile(r"/v2/images/(?P<image_id>[^/]+)/file")
ALLOWED = "GET, HEAD, PUT"
OCTET_STREAM = "application/octet-stream"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class PreconditionFailed(StreamdError):
    status = 412
    title = "Precondition Failed"


class BodyStalled(SourceAborted):
    """The client sent nothing for ``upload_idle_timeout`` seconds. Retry the upload."""

    status = 408
    title = "Request Timeout"


class Headers:
    """A request's headers by lower-case name; repeated headers joined with ", "."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            self._values[key] = f"{self._values[key]}, {text}" if key in self._values else text

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)


class RequestBody:
    """The request body as a ``ByteSource``: ``readinto`` over ASGI ``receive()``.

    A message is received only when ``readinto`` finds nothing left of the previous one, so
    the body moves exactly as fast as the pipeline consumes it (hypercorn stops reading the
    socket when its small per-request queue is full). Bytes of a message that did not fit
    the caller's buffer wait in ``_pending``, a view: each byte is copied once, into the
    caller's buffer. A client that goes away raises ``SourceAborted``; one that sends
    nothing for ``idle_timeout`` seconds while more is wanted raises ``BodyStalled``.
    """

    def __init__(self, receive: Receive, *, idle_timeout: float = math.inf) -> None:
        self._receive = receive
        self._idle_timeout = idle_timeout
        self._pending = memoryview(b"")
        self._more = True
        self.disconnected = False
        self.received = 0

    @property
    def complete(self) -> bool:
        """The client has sent the whole body (some may still wait in ``_pending``)."""
        return not self._more

    async def discard_until_disconnect(self) -> None:
        """Receive and drop messages until ``http.disconnect``."""
        self._pending = memoryview(b"")
        while not self.disconnected:
            message = await self._receive()
            self._more = self._more and message.get("more_body", False)
            self.disconnected = message["type"] == "http.disconnect"

    async def readinto(self, buf: memoryview) -> int:
        while not self._pending:
            if not self._more:
                return 0
            message: dict[str, Any] | None = None
            with trio.move_on_after(self._idle_timeout):
                message = await self._receive()
            if message is None:
                raise BodyStalled(
                    f"no image data arrived for {self._idle_timeout:g} seconds, so the upload "
                    "was abandoned; retry it"
                )
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise SourceAborted(
                    "the client closed the connection before sending all image data; "
                    "retry the upload"
                )
            self._more = message.get("more_body", False)
            self._pending = memoryview(message.get("body", b""))
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.received += n
        return n


class Response:
    """One response on ``send``; remembers whether it has started, and its status."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    @property
    def started(self) -> bool:
        return self.status is not None

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        await self._send({
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        })

    async def body(self, data: bytes | memoryview, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def empty(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        await self.start(status, headers or [])
        await self.body(b"", more=False)

    async def error(self, exc: BaseException) -> None:
        status, message, extra = describe(exc)
        if isinstance(exc, StoreFull):
            status, message = 413, f"Image storage media is full: {message}"  # as Glance
        payload = error_body(status, message)
        headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
        await self.start(status, headers + list(extra.items()))
        await self.body(payload, more=False)


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """What a raw-ASGI data handler starts from: the image, the headers, the body to pull
    and the response to send (``/file`` and ``/stage`` alike)."""

    image_id: str
    method: str
    headers: Headers
    body: RequestBody
    response: Response

    @classmethod
    def of(cls, rt: Runtime, path: re.Pattern[str], scope: dict[str, Any], receive: Receive,
           send: Send) -> DataRequest:
        match = path.fullmatch(scope["path"])
        assert match is not None  # the dispatcher routed it here by this pattern
        return cls(
            image_id=match["image_id"],
            method=scope["method"],
            headers=Headers(scope["headers"]),
            body=RequestBody(receive, idle_timeout=rt.settings.upload_idle_timeout),
            response=Response(send),
        )


def require_octet_stream(headers: Headers, action: str) -> None:
    """415 unless the body is ``application/octet-stream`` (as Glance); ``action`` names
    what the client is doing, for the message."""
    content_type = headers.get("content-type")
    if content_type is None or content_type.split(";")[0].strip().lower() != OCTET_STREAM:
        raise UnsupportedMediaType(
            f"The request media type {content_type} is not supported by this server: "
            f"{action} with Content-Type: {OCTET_STREAM}"
        )


def file_handler(rt: Runtime, auth: Authenticator) -> ASGIApp:
    """The ASGI handler of ``/v2/images/{id}/file``; ``auth`` says who is asking."""

    async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        request = DataRequest.of(rt, FILE_PATH, scope, receive, send)
        image_id, method, headers = request.image_id, request.method, request.headers
        body, response = request.body, request.response
        try:
            ctx = await auth.authenticate(headers)  # 401 before anything else, as Glance
            if method == "PUT":
                await _put(rt, ctx, image_id, headers, body)
            elif method in ("GET", "HEAD"):
                await _get(rt, ctx, image_id, headers, receive, response,
                           head=method == "HEAD")
                return
            else:
                raise MethodNotAllowed(
                    f"{method} is not allowed on image data; use {ALLOWED}",
                    headers={"Allow": ALLOWED},
                )
        except Exception as exc:
            if response.started:
                # too late for an error response: ending the handler without finishing the
                # body makes hypercorn close the connection, so the client sees it short
                log.warning("%s %s failed after the response started: %r",
                            method, scope["path"], exc)
                return
            await _answer(body, functools.partial(response.error, exc))
            return
        await _answer(body, functools.partial(response.empty, 204))

    return handle


async def _answer(body: RequestBody, respond: Callable[[], Awaitable[None]]) -> None:
    """Send the response to a request whose body may not have been read to its end.

    The unread rest keeps arriving in hypercorn's small per-request queue, and so does the
    ``http.disconnect`` it queues when the response ends; nobody reading that queue would
    hang this handler and the connection for good. So it is drained while the response
    goes out (hypercorn then closes the connection: the rest of the body is never read).
    """
    if body.disconnected:
        return  # nobody to answer
    if body.complete:
        await respond()
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(body.discard_until_disconnect)
        await respond()


# -- upload ------------------------------------------------------------------------------------


async def _put(
    rt: Runtime, ctx: RequestContext, image_id: str, headers: Headers, body: RequestBody
) -> None:
    require_octet_stream(headers, "send image data")
    size = _content_length(headers)
    await transfers.upload(rt, ctx, image_id, body, size=size)


def _content_length(headers: Headers) -> int | None:
    """The announced body size; None for a chunked body (h11 has validated the header)."""
    value = headers.get("content-length")
    if value is None or "chunked" in (headers.get("transfer-encoding") or "").lower():
        return None
    return int(value)


# -- download ----------------------------------------------------------------------------------


async def _get(
    rt: Runtime,
    ctx: RequestContext,
    image_id: str,
    headers: Headers,
    receive: Receive,
    response: Response,
    *,
    head: bool,
) -> None:
    record = await transfers.image_for_download(rt, ctx, image_id)
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
    await _stream(rt, record, offset, length, status, out, receive, response)


async def _stream(
    rt: Runtime,
    record: ImageRecord,
    offset: int,
    length: int,
    status: int,
    headers: list[tuple[str, str]],
    receive: Receive,
    response: Response,
) -> None:
    """Send ``[offset, offset + length)`` chunk by chunk; stop if the client goes away.

    The first chunk is read before the response starts, so that a store failure can still
    be answered with a status (as Glance: 204 if the data is missing, 503 if the store fails).
    """
    sent = 0
    async with transfers.read_data(rt, record, offset, length) as chunks:
        try:
            first = await anext(chunks)
        except ObjectNotFound:
            log.error("image %s is active but its data is missing from store %s",
                      record.id, record.store)
            await response.empty(204)
            return
        await response.start(status, headers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            await response.body(first, more=True)
            sent += len(first)
            async for chunk in chunks:
                await response.body(chunk, more=True)
                sent += len(chunk)
            nursery.cancel_scope.cancel()
    if sent < length:
        log.info("DOWNLOAD image=%s offset=%d length=%d stopped after %d: client gone",
                 record.id, offset, length, sent)
        return
    await response.body(b"", more=False)


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


DATA_ROUTES.append((FILE_PATH, file_handler))

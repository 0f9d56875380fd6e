"""The raw-ASGI toolkit of the data routes (``…/file``, ``…/stage``).

Data routes bypass Quart on purpose (see ``streamd.http.app``): the request body is pulled
with ``receive()`` only when the pipeline asks for more (``RequestBody``), and the response is
sent with ``send()`` chunk by chunk, with no response timeout. That leaves each handler to do
by hand what Quart would do: read headers, adapt the body, send a status, map an error. This
module does it once, so a data handler is only its verbs: ``data_handler`` authenticates the
request, picks the verb by method (405 otherwise), and sends the verb's answer or the error's
while draining whatever of the body was not read.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio

from streamd.auth import Authenticator
from streamd.context import RequestContext
from streamd.errors import MethodNotAllowed, UnsupportedMediaType
from streamd.http.errors import describe, error_body
from streamd.io import OpenFile, SourceAborted, StoreFull

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
ZERO_COPY_SEND = "http.response.zerocopysend"  # the ASGI extension a server offers per request

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Respond = Callable[[], Awaitable[None]]
"""Sends a whole response; ``answer`` calls it once the handler is done with the body."""


class BodyStalled(SourceAborted):
    """The client sent nothing for ``upload_idle_timeout`` seconds. Retry the upload."""

    status = 408


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

    async def sendfile(self, file: OpenFile, offset: int, count: int, *, more: bool) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` as body, with ``os.sendfile``
        (the ``http.response.zerocopysend`` extension: only when ``DataRequest.zero_copy``)."""
        await self._send({"type": "http.response.zerocopysend", "file": file,
                          "offset": offset, "count": count, "more_body": more})

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
    path: str
    headers: Headers
    body: RequestBody
    response: Response
    receive: Receive
    zero_copy: bool
    """The server sends files with ``os.sendfile`` on this connection (plaintext HTTP/1.1,
    hypercorn taught by streamd.hypercorn_h11 or anycorn): ``Response.sendfile`` may be
    used."""

    @classmethod
    def of(cls, path: re.Pattern[str], scope: Scope, receive: Receive, send: Send, *,
           idle_timeout: float) -> DataRequest:
        """``idle_timeout``: seconds the body may stall before ``BodyStalled``."""
        match = path.fullmatch(scope["path"])
        assert match is not None  # the dispatcher routed it here by this pattern
        return cls(
            image_id=match["image_id"],
            method=scope["method"],
            path=scope["path"],
            headers=Headers(scope["headers"]),
            body=RequestBody(receive, idle_timeout=idle_timeout),
            response=Response(send),
            receive=receive,
            zero_copy=ZERO_COPY_SEND in scope.get("extensions", {}),
        )


Verb = Callable[[DataRequest, RequestContext], Awaitable[Respond | None]]
"""One method of a data route, for an authenticated request: returns how to answer, or None
when it has answered itself (a download streams its response while it reads)."""


def require_octet_stream(headers: Headers, action: str) -> None:
    """415 unless the body is ``application/octet-stream`` (as Glance); ``action`` names
    what the client is doing, for the message."""
    content_type = headers.get("content-type")
    if content_type is None or content_type.split(";")[0].strip().lower() != OCTET_STREAM:
        raise UnsupportedMediaType(
            f"The request media type {content_type} is not supported by this server: "
            f"{action} with Content-Type: {OCTET_STREAM}"
        )


def content_length(headers: Headers) -> int | None:
    """The announced body size; None for a chunked body (h11 has validated the header)."""
    value = headers.get("content-length")
    if value is None or "chunked" in (headers.get("transfer-encoding") or "").lower():
        return None
    return int(value)


async def answer(body: RequestBody, respond: Respond) -> None:
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


def data_handler(path: re.Pattern[str], verbs: Mapping[str, Verb], *, auth: Authenticator,
                 idle_timeout: float, resource: str) -> ASGIApp:
    """The ASGI handler of a data route: every route authenticates, refuses other methods and
    answers errors the same way, so only its ``verbs`` (by method) differ.

    ``resource`` names what the route holds, for the 405 message; ``auth`` says who is
    asking; ``idle_timeout`` bounds how long the body may stall.
    """
    allowed = ", ".join(sorted(verbs))

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        request = DataRequest.of(path, scope, receive, send, idle_timeout=idle_timeout)
        body, response = request.body, request.response
        try:
            ctx = await auth.authenticate(request.headers)  # 401 before anything, as Glance
            verb = verbs.get(request.method)
            if verb is None:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed on {resource}; use {allowed}",
                    headers={"Allow": allowed},
                )
            respond = await verb(request, ctx)
        except Exception as exc:
            if response.started:
                # too late for an error response: ending the handler without finishing the
                # body makes hypercorn close the connection, so the client sees it short
                log.warning("%s %s failed after the response started: %r",
                            request.method, request.path, exc)
                return
            await answer(body, functools.partial(response.error, exc))
            return
        if respond is not None:
            await answer(body, respond)

    return handle

"""hypercorn's HTTP/1.1 connections as streamd needs them: ``os.sendfile`` bodies (the ASGI
``http.response.zerocopysend`` extension), JSON error bodies, and a header timeout.

Zero copy. A download of a local file (the file store, a complete cache entry) is the hot
path of a boot storm; through Python every chunk is read into a buffer, copied by hypercorn
(``bytes()``), framed by h11 and written. With ``os.sendfile`` the kernel moves page-cache
pages to the socket and Python only counts. hypercorn has no hook for this (the extension is
an open request upstream); anycorn, its fork on AnyIO, has one, but costs 25-40 % more per
metadata request on trio (bench/results/README.md). So streamd keeps hypercorn and adds the
extension the way anycorn does: the HTTP/1.1 protocol offers it in the scope of each
plaintext request and turns a ``zerocopysend`` message into h11 framing plus a ``SendFile``
event (h11's ``send_with_data_passthrough`` keeps the Content-Length accounting, or writes
the chunk size, for a placeholder that only has a length, and hands the placeholder back
unread); the trio TCP server fulfils ``SendFile`` with ``os.sendfile`` on its socket, in a
worker thread that waits for room in the socket buffer itself (``_sendfile``; trio's
``send_all`` returns only once everything it was given is in the kernel, so the headers
are on the wire first). TLS and HTTP/2 connections never see the extension: the app
streams there. A sendfile cut short (client gone, task cancelled) leaves the response
incomplete, so the connection is closed, and a ``zerocopysend`` on a connection that is
gone raises ``ClientDisconnected`` (an ``OSError``, as ASGI 2.4 asks of ``send``): an app
that yields only in the server's send would otherwise go through its remaining windows as
no-ops and end a response shorter than its Content-Length.

Errors. hypercorn answers a request h11 cannot parse (bad request line 400, headers too
large 431, an unknown transfer coding 501) with an empty body; here it gets the JSON
envelope every other streamd error has (``streamd.http.errors``).

Header timeout. hypercorn's keep-alive timer runs until a request's headers are complete,
and its read timeout restarts with every byte, so a client sending headers one byte at a
time held a connection for minutes. Here the headers of each request must be complete
within ``header_timeout`` seconds of their first byte, or the connection gets a 408 and is
closed.

``install()`` makes hypercorn's trio ``serve`` build connections from these classes (it reads
both names from module globals: there is no parameter to pass them). Built against
hypercorn 0.18 (pinned in pyproject.toml): the subclasses use ``HTTPStream.state``,
``HTTPStream._send_closed``, ``H11Protocol._send_h11_event`` and
``H11Protocol._send_error_response``; tests/e2e/test_zero_copy.py and
tests/e2e/test_http_layer.py hold them to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import h11
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.utils import UnexpectedMessageError, suppress_body

from streamd.http.errors import error_body
from streamd.io import posix

ZERO_COPY_SEND = "http.response.zerocopysend"
_SENDFILE_VERSIONS = frozenset({"1.0", "1.1"})  # h11 frames these with plain byte ranges


class ClientDisconnected(OSError):
    """``send`` of a ``zerocopysend`` on a connection whose client is gone (ASGI 2.4: a
    server-specific ``OSError``)."""


class Outcome:
    """Whether a file's bytes all went out: set by the TCP server, read by the app's
    ``send``. A flag of its own because the stream's ``closed`` cannot tell: a client that
    has every byte may hang up before ``send`` returns, which closes the stream too."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False


@dataclasses.dataclass(frozen=True)
class _FileBody(StreamEvent):
    """A stream's ``zerocopysend``, on its way from the stream to the HTTP/1.1 protocol."""

    fd: int
    offset: int
    count: int
    outcome: Outcome


@dataclasses.dataclass(frozen=True)
class SendFile(Event):
    """Bytes of a file for the TCP server to put on the socket with ``os.sendfile``."""

    fd: int
    offset: int
    count: int
    outcome: Outcome


class _Placeholder:
    """What h11 frames in place of the file's bytes: only its length is read."""

    __slots__ = ("fd", "offset", "count")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd, self.offset, self.count = fd, offset, count

    def __len__(self) -> int:
        return self.count


class _OfferingTaskGroup:
    """The connection's task group, as its HTTP streams see it: each app it spawns gets the
    extension in its scope and a ``send`` that understands the extension's message.

    A wrapper rather than an ``HTTPStream`` subclass because hypercorn builds the stream
    itself (a module global in its h11 protocol) and hands ``spawn_app`` the scope and the
    stream's own ``app_send``: this is the one place both pass through.
    """

    def __init__(self, task_group: Any) -> None:
        self._task_group = task_group

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task_group, name)

    async def spawn_app(self, app: Any, config: Any, scope: dict[str, Any],
                        send: Any) -> Any:
        stream = getattr(send, "__self__", None)
        if (isinstance(stream, HTTPStream) and scope.get("type") == "http"
                and scope.get("http_version") in _SENDFILE_VERSIONS):
            scope["extensions"][ZERO_COPY_SEND] = {}
            send = _zero_copy_send(stream, send)
        return await self._task_group.spawn_app(app, config, scope, send)


def _zero_copy_send(stream: HTTPStream, app_send: Any) -> Any:
    """``stream.app_send``, plus the ``zerocopysend`` message (ASGI's extension: ``file``
    with a ``fileno()``, optional ``offset`` and ``count``, ``more_body``)."""

    async def send(message: Any) -> None:
        if message is None or message["type"] != ZERO_COPY_SEND:
            await app_send(message)
            return
        if stream.state != ASGIHTTPState.RESPONSE:
            raise UnexpectedMessageError(stream.state, message["type"])
        if stream.closed:
            raise ClientDisconnected("the client is gone: the response cannot be sent")
        fd = message["file"].fileno()
        offset = message.get("offset")
        if offset is None:  # the file's position, which os.sendfile with an offset ignores
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        count = message.get("count")
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count > 0 and not suppress_body(
                stream.scope["method"], int(stream.response["status"])):
            outcome = Outcome()
            await stream.send(_FileBody(stream_id=stream.stream_id, fd=fd, offset=offset,
                                        count=count, outcome=outcome))
            if not outcome.complete:  # the TCP server could not send it all
                raise ClientDisconnected("the client went away during the file's bytes")
        if not message.get("more_body", False):
            await stream._send_closed()

    return send


# what a request h11 could not parse is told (the status is h11's hint)
_PROTOCOL_ERRORS = {
    400: "The request is not valid HTTP/1.1 (request line, header or body framing).",
    408: "The request's headers did not arrive in time.",
    413: "The request is too large.",
    431: "The request line and headers are too large.",
    501: "The request uses a transfer coding this server does not implement.",
}


class StreamdH11Protocol(hypercorn_h11.H11Protocol):
    """hypercorn's HTTP/1.1 protocol with ``zerocopysend`` on plaintext connections (when
    ``zero_copy``), JSON error bodies and a header timeout (class settings: ``install``)."""

    zero_copy = False
    header_timeout = 20.0

    def __init__(self, app: Any, config: Any, context: Any, task_group: Any,
                 connection_state: Any, ssl: bool, client: Any, server: Any,
                 send: Any) -> None:
        if self.zero_copy and not ssl:
            task_group = _OfferingTaskGroup(task_group)
        super().__init__(app, config, context, task_group, connection_state, ssl, client,
                         server, send)
        self._header_timer: trio.CancelScope | None = None

    async def handle(self, event: Event) -> None:
        await super().handle(event)
        if isinstance(event, Closed):
            self._stop_header_timer()
        elif (self._header_timer is None and self.stream is None
              and self.connection.their_state is h11.IDLE
              and self.connection.trailing_data[0]):
            # the first bytes of a request whose headers are not complete yet
            self._header_timer = trio.CancelScope()
            self.task_group.spawn(self._expire_headers, self._header_timer)

    async def _create_stream(self, request: h11.Request) -> None:
        self._stop_header_timer()
        await super()._create_stream(request)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    async def _expire_headers(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self.header_timeout)
            self._header_timer = None
            if self.stream is None and self.connection.our_state is h11.IDLE:
                await self._send_error_response(408)
                await self.send(Closed())

    async def _send_error_response(self, status_code: int) -> None:
        body = error_body(status_code, _PROTOCOL_ERRORS.get(
            status_code, "The request could not be handled at the HTTP layer."))
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", b"%d" % len(body)), (b"connection", b"close"),
                   *self.config.response_headers("h11")]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    async def stream_send(self, event: StreamEvent) -> None:
        if not isinstance(event, _FileBody):
            await super().stream_send(event)
            return
        assert isinstance(self.connection, h11.Connection)  # never a websocket here
        placeholder = _Placeholder(event.fd, event.offset, event.count)
        try:
            pieces = self.connection.send_with_data_passthrough(
                h11.Data(data=placeholder))  # type: ignore[arg-type]
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        for piece in pieces or ():
            if piece is placeholder:
                await self.send(SendFile(fd=event.fd, offset=event.offset, count=event.count,
                                         outcome=event.outcome))
            else:
                await self.send(RawData(data=piece))


class ZeroCopyTCPServer(TCPServer):
    """hypercorn's trio TCP server, able to put a ``SendFile`` on its socket."""

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, SendFile):
            await super().protocol_send(event)
            return
        async with self.send_lock:
            try:
                complete = await _sendfile(self.stream.socket, event.fd, event.offset,
                                           event.count)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                complete = False
            except BaseException:  # cancelled mid-file: the response can never be whole
                with trio.CancelScope(shield=True):
                    await self._abandon()
                raise
        if complete:
            event.outcome.complete = True
        else:
            await self._abandon()

    async def _abandon(self) -> None:
        """The body went out short (client gone, file shorter than promised): the framing
        is broken, so the connection ends here."""
        try:
            await self.stream.aclose()
        finally:
            await self.protocol.handle(Closed())


# how long the sending thread waits for room in the socket buffer before it looks whether
# it was asked to stop (the download cancelled): the delay of a cancel, in ms
_POLL_MS = 100
_SEND_TIMEOUT = struct.pack("ll", 0, _POLL_MS * 1000)  # SO_SNDTIMEO, a struct timeval
# SO_RCVTIMEO while the sending thread has the socket blocking (``_blocking``): 1 ms, which
# the kernel rounds up to a clock tick
_RECEIVE_TIMEOUT = struct.pack("ll", 0, 1000)
# threads that may be in _send_window at once, apart from trio's default limiter (which the
# registry and the stores share): a download of a stalled client holds one until cancelled
_SENDERS = 256
# a window of at most this many bytes is first tried on the event loop, non-blocking: a
# 1 MiB range usually fits in the socket buffer, and the trip to a worker thread and back
# cost more than the send (py-spy, 1 MiB ranges at 8 clients: the thread hop and the
# wake-ups it takes were ~1/5 of the event loop's busy time); what does not fit goes on in
# the thread as before
_INLINE_MAX = 1024 * 1024
_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("sendfile_limiter")


async def _sendfile(sock: Any, fd: int, offset: int, count: int) -> bool:
    """``os.sendfile`` ``count`` bytes of ``fd`` from ``offset`` to ``sock``; False if the
    file ended first.

    The loop runs in a worker thread, on the socket made blocking for it (``_send_window``):
    on a non-blocking socket each ``os.sendfile`` moves only what the buffer has room for,
    and waking the event loop for every such piece cost more than the copy it saved (bench:
    8 cached downloads 1906 MiB/s at 0.53 CPU-s/GiB, below streaming). A cancel
    (client gone, shutdown) sets ``stop``, which the thread sees within ``_POLL_MS``; the
    call is shielded until it has, so the socket and the file are never used after return.
    A window of at most ``_INLINE_MAX`` bytes whose ends are in the page cache is first
    offered to the socket from the event loop; the thread sends only what did not fit.
    """
    if count <= _INLINE_MAX and posix.range_cached(fd, offset, count):
        # most often the socket buffer has room for all of it: one call, no thread
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, count)
        except BlockingIOError:
            sent = -1
        if sent == 0:
            return False  # the file ended first
        if sent > 0:
            offset, count = offset + sent, count - sent
            if count == 0:
                return True
    try:
        limiter = _limiter.get()
    except LookupError:  # the first sendfile of this trio run
        limiter = trio.CapacityLimiter(_SENDERS)
        _limiter.set(limiter)
    stop = threading.Event()
    complete = False
    error: OSError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_cancel, stop)
        with trio.CancelScope(shield=True):
            try:
                complete = await trio.to_thread.run_sync(
                    _send_window, sock.fileno(), fd, offset, count, stop, limiter=limiter)
            except OSError as exc:  # raised outside the nursery: not in an ExceptionGroup
                error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return complete


async def _stop_on_cancel(stop: threading.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        stop.set()


def _send_window(out: int, fd: int, offset: int, count: int, stop: threading.Event) -> bool:
    """The thread's loop: True once all ``count`` bytes are in the socket, False if the file
    ended first or ``stop`` was set; a socket error (client gone) raises.

    The socket is blocking while the loop runs (``_blocking``): one ``os.sendfile`` waits
    for room in the kernel, as the static server's does, instead of returning to Python
    each time the buffer fills and polling for room.
    """
    end = offset + count
    with _blocking(out):
        while offset < end:
            try:
                sent = os.sendfile(out, fd, offset, end - offset)
            except BlockingIOError:  # SO_SNDTIMEO: no room for _POLL_MS
                if stop.is_set():
                    return False
                continue
            if sent == 0:
                return False
            offset += sent
            if stop.is_set() and offset < end:
                return False
    return True


@contextlib.contextmanager
def _blocking(out: int) -> Iterator[None]:
    """``out`` blocking for the sending thread, non-blocking again for trio afterwards.

    O_NONBLOCK belongs to the socket's open file, which the event loop shares. Its sends
    wait for the connection's send lock, which the sender holds; its reads are what the
    timeouts are for: a send blocks at most ``_POLL_MS`` (then the thread looks at
    ``stop``), and a read that trio starts meanwhile on an empty socket returns EAGAIN
    after at most a clock tick instead of holding the event loop (hypercorn reads only
    until a pipelined request arrives, then waits for this response to end).
    Measured, 8 clients x 8 cached 1 GiB images, old and new server alternating, 10 runs
    each (AMD, 2 cores, a noisy host): polling a non-blocking socket 2913-3977 MiB/s
    (median ~3250) at 0.15-0.35 server CPU-s/GiB (median 0.24), blocking 3135-3901
    (~3475) at 0.15-0.23 (0.19). The static server spends 0.08-0.10 blocking, 0.13-0.17
    when made to poll a non-blocking socket.
    """
    with socket.socket(fileno=os.dup(out)) as sock:  # a second fd for the same socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SEND_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _RECEIVE_TIMEOUT)
    os.set_blocking(out, True)
    try:
        yield
    finally:
        os.set_blocking(out, False)


def install(*, zero_copy: bool, header_timeout: float) -> None:
    """Make hypercorn's trio ``serve`` build its connections from the classes above.

    Settings of the process (one server per process), so class attributes."""
    import hypercorn.protocol
    import hypercorn.trio.run

    StreamdH11Protocol.zero_copy = zero_copy
    StreamdH11Protocol.header_timeout = header_timeout
    hypercorn.protocol.H11Protocol = StreamdH11Protocol  # type: ignore[misc]
    hypercorn.trio.run.TCPServer = ZeroCopyTCPServer  # type: ignore[misc]

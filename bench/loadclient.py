"""An HTTP/1.1 load client on asyncio + uvloop, fast enough not to be what is measured.

Response bodies are received with :class:`asyncio.BufferedProtocol` straight into one
buffer per connection (no ``bytes`` object per network read) and handed to a sink as
``memoryview`` slices; request bodies are read from the file with aiofiles one chunk ahead
of the socket write. The harness compares it with curl on one transfer to show that it is
not the bottleneck (``client.*`` figures in the report).

Only what the harness needs: ``Content-Length`` request bodies (never ``Expect:
100-continue``: uWSGI does not answer it), ``Content-Length``, chunked and close-delimited
response bodies, keep-alive when the server allows it (Glance under uWSGI does not).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiofiles
import uvloop

KiB = 1024
MiB = 1024 * KiB

CHUNK = 1 * MiB  # one file read and one socket write per MiB: few thread hops, bounded memory
RECV_BUFFER = 1 * MiB  # per connection; a full buffer pauses reading (back-pressure)
WRITE_HIGH_WATER = 4 * MiB  # the transport buffers at most this much before drain() waits
MAX_HEAD = 64 * KiB  # status line + headers; longer is a broken server
ABORT_WAIT = 1.0  # seconds to wait for an aborted socket to be closed

Sink = Callable[[memoryview], Awaitable[None] | None]
T = TypeVar("T")


class HttpError(Exception):
    """A request failed below HTTP: connection refused or reset, malformed response."""


class BodyTooLarge(HttpError):
    """The response body is longer than the caller allowed; the connection was dropped."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # collected only when asked for; else b""
    body_size: int  # bytes of body received
    seconds: float  # from the first request byte to the last response byte

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class _Protocol(asyncio.BufferedProtocol):
    """Receives into one reusable buffer; the reader side consumes from ``start`` to ``end``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.buf = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.eof = False
        self.exc: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- transport callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        if self.end == len(self.buf) and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.exc = exc
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_reader()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(HttpError(f"connection lost while sending: {exc}"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- reader side ---------------------------------------------------------------------
    def _wake_reader(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)

    async def drain(self) -> None:
        if self.eof and self.exc is not None:
            raise HttpError(f"connection lost while sending: {self.exc}")
        if self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    async def wait_data(self) -> None:
        """Wait until there is unconsumed data or the peer has closed."""
        while self.start == self.end and not self.eof:
            self._data_waiter = self._loop.create_future()
            await self._data_waiter

    def consume(self, n: int) -> None:
        self.start += n
        if self.start == self.end:
            self.start = self.end = 0
            if self._reading_paused and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()

    def compact(self) -> None:
        """Move unconsumed bytes to the front; only between sink calls, never during one."""
        n = self.end - self.start
        self.buf[:n] = self.buf[self.start : self.end]
        self.start, self.end = 0, n
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def read_until(self, sep: bytes, limit: int) -> bytes:
        """Return the bytes up to and including ``sep``."""
        searched = self.start
        while True:
            i = self.buf.find(sep, max(self.start, searched - len(sep)), self.end)
            if i >= 0:
                out = bytes(self.buf[self.start : i + len(sep)])
                self.consume(i + len(sep) - self.start)
                return out
            if self.end - self.start > limit:
                raise HttpError(f"no {sep!r} within {limit} bytes")
            if self.eof:
                raise HttpError(f"connection closed before {sep!r} ({self.exc})")
            searched = self.end
            if self.end == len(self.buf):
                self.compact()
                searched = self.end
            self._data_waiter = self._loop.create_future()
            await self._data_waiter

    async def read_body(self, n: int | None, sink: Sink | None, keep: bytearray | None) -> int:
        """Pass the next ``n`` bytes (all until EOF when None) to ``sink``; return the count."""
        got = 0
        while n is None or got < n:
            await self.wait_data()
            avail = self.end - self.start
            if avail == 0:  # EOF
                if n is None:
                    return got
                raise HttpError(f"connection closed after {got} of {n} body bytes ({self.exc})")
            take = avail if n is None else min(avail, n - got)
            piece = self.view[self.start : self.start + take]
            if keep is not None:
                keep += piece
            if sink is not None:
                pending = sink(piece)
                if pending is not None:
                    await pending
            got += take
            self.consume(take)
        return got


class Connection:
    """One HTTP/1.1 connection; requests on it run one after another."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self._proto: _Protocol | None = None
        self.reused = False
        self.reusable = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(
                lambda: _Protocol(loop), self.host, self.port, ssl=self.tls
            )
        except OSError as e:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        self._proto = proto
        self.reusable = True

    def close(self) -> None:
        self.reusable = False
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def abort(self) -> None:
        """Drop the connection now, unsent data included, and wait until the socket is closed.

        ``close()`` would first flush what is buffered, which never happens when the server
        is not reading; the server would then wait for the rest of the body until it times
        out (uWSGI: 60 s per request, with only a few workers).
        """
        proto, self._proto = self._proto, None
        self.reusable = False
        if proto is None or proto.transport is None:
            return
        proto.transport.abort()
        try:
            await asyncio.wait_for(asyncio.shield(proto.closed), ABORT_WAIT)
        except (TimeoutError, asyncio.CancelledError):
            pass

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        *,
        body: bytes | None = None,
        upload: str | os.PathLike[str] | None = None,
        sink: Sink | None = None,
        collect: bool = True,
        max_body: int | None = None,
    ) -> Response:
        """Send one request and read the whole response.

        ``body`` sends bytes; ``upload`` streams a file. The response body goes to ``sink``
        (called with memoryview slices of the receive buffer, valid only during the call) and,
        when ``collect``, into ``Response.body``.
        """
        if self._proto is None:
            await self.open()
        proto = self._proto
        assert proto is not None and proto.transport is not None
        transport = proto.transport
        t0 = time.perf_counter()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        length = None
        if body is not None:
            length = len(body)
        elif upload is not None:
            length = os.stat(upload).st_size
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            try:
                if upload is not None:
                    transport.write(head)
                    await self._send_file(proto, upload)
                else:
                    transport.write(head + body if body else head)
                    await proto.drain()
            except HttpError:
                # the server answered early (an error) and reset the connection while the
                # body was still going out: what it answered may already be here
                if proto.start == proto.end:
                    raise
                self.reusable = False
            resp = await self._read_response(proto, method, sink, collect, max_body)
        except BaseException:
            await self.abort()
            raise
        resp.seconds = time.perf_counter() - t0
        self.reused = True
        if not self.reusable:
            self.close()
        return resp

    async def _send_file(self, proto: _Protocol, path: str | os.PathLike[str]) -> None:
        transport = proto.transport
        assert transport is not None
        async with aiofiles.open(path, "rb") as f:
            ahead = asyncio.ensure_future(f.read(CHUNK))
            try:
                while True:
                    chunk = await ahead
                    if not chunk:
                        return
                    ahead = asyncio.ensure_future(f.read(CHUNK))
                    if proto.eof:  # the server answered early (an error) and closed
                        return
                    transport.write(chunk)
                    await proto.drain()
            finally:
                if not ahead.done():
                    ahead.cancel()
                    await asyncio.gather(ahead, return_exceptions=True)

    async def _read_response(
        self,
        proto: _Protocol,
        method: str,
        sink: Sink | None,
        collect: bool,
        max_body: int | None,
    ) -> Response:
        while True:
            head = await proto.read_until(b"\r\n\r\n", MAX_HEAD)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise HttpError(f"bad status line {status_line!r}")
            status = int(parts[1])
            if status != 100:
                break
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if parts[0] == "HTTP/1.0" or "close" in headers.get("connection", "").lower():
            self.reusable = False
        keep = bytearray() if collect else None
        size = 0
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await proto.read_until(b"\r\n", 1024)
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while await proto.read_until(b"\r\n", MAX_HEAD) != b"\r\n":
                        pass  # trailers
                    break
                size += n
                if max_body is not None and size > max_body:
                    raise BodyTooLarge(f"body longer than {max_body} bytes")
                await proto.read_body(n, sink, keep)
                await proto.read_until(b"\r\n", 2)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if max_body is not None and n > max_body:
                raise BodyTooLarge(f"body of {n} bytes, more than {max_body}")
            size = await proto.read_body(n, sink, keep)
        else:
            self.reusable = False
            size = await proto.read_body(None, sink, keep)
        return Response(status, headers, bytes(keep) if keep is not None else b"", size, 0.0)


@dataclass
class HttpClient:
    """A pool of keep-alive connections to one origin, plus the headers every request sends."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None  # https: the CA the server's certificate is verified with
    _idle: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        u = urlsplit(self.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{self.base_url!r}: only http(s)://host:port URLs are supported")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = (ssl.create_default_context(cafile=self.ca_file)
                    if u.scheme == "https" else None)
        self.prefix = u.path.rstrip("/")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = self._idle.pop() if self._idle else Connection(self.host, self.port, self.tls)
        try:
            yield conn
        finally:
            if conn.reusable:
                self._idle.append(conn)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> Response:
        """One request on a pooled connection; a stale keep-alive connection is retried once."""
        all_headers = {**self.headers, **(headers or {})}
        url = self.prefix + path
        async with self.connection() as conn:
            try:
                return await conn.request(method, url, all_headers, **kw)
            except HttpError:
                if not conn.reused:
                    raise
            conn.reused = False
            return await conn.request(method, url, all_headers, **kw)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def gather_all(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coros`` at once; results in order. The first failure cancels the others (their
    connections are closed, so no server is left waiting for a body) and is raised itself."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except ExceptionGroup as group:
        raise group.exceptions[0] from None
    return [t.result() for t in tasks]


async def gather_limited(coros: list[Coroutine[Any, Any, T]], concurrency: int) -> list[T]:
    """Like :func:`gather_all`, at most ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(c: Coroutine[Any, Any, T]) -> T:
        try:
            async with sem:
                return await c
        finally:
            c.close()  # cancelled while waiting: never started, so say it will not be

    return await gather_all([one(c) for c in coros])


def runner() -> asyncio.Runner:
    """An event loop runner on uvloop; ``runner().run(coro)`` several times on one loop."""
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)

"""A response body read in worker threads, a chunk per thread hop: bulk downloads.

httpx in the event loop reads a socket 64 KiB at a time and turns each read into an h11
event, bytes object and all: measured here on a Swift GET, ~1.1-1.5 CPU-s per GiB in the
client, which on a 2-core machine shared with Swift made downloads slower than Glance's
python-swiftclient (~0.3 CPU-s/GiB). ``http.client``'s ``read`` in a worker thread puts
the socket's bytes into a ``bytes`` of ``read_chunk``, with one thread hop per read.
Control requests (auth, HEAD, DELETE, manifests) stay on httpx.

A read in progress cannot be interrupted: a cancelled download waits for the read in flight
(at most ``read_chunk`` bytes, or the socket timeout) before its connection is closed.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import trio

from streamd.units import MiB

# one thread hop per 4 MiB: each chunk also costs every hop after it (a cache fill's pwrite,
# and each reader behind the fill sending it through hypercorn), so fewer, bigger chunks
# cost less CPU per byte. 8 clients behind one cold fill of a 1 GiB Swift image, paired A/B
# on one Swift, 4 rounds (scratch script, session note of 2026-12-06): 512 KiB 8.9-10.3 s at
# 7.7-9.1 server CPU-s; 2 MiB 7.5-9.2 s at 6.4-8.2; 4 MiB 6.5-7.7 s at 5.7-7.0 (2 MiB
# 6.9-7.8 s at 6.0-6.9 beside it). The main thread's Python time fell from 2.2-2.8 to
# 0.9-1.7 CPU-s; what remains is the kernel's: sending 8 GiB on loopback, and the page
# cache the fill writes.
READ_CHUNK = 4 * MiB
TIMEOUT = 120.0  # seconds a connect or a read may wait


class BulkResponse:
    """An open GET: ``status``, ``headers`` and ``chunks()`` of its body."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 limiter: trio.CapacityLimiter | None) -> None:
        self._conn = conn
        self._response = response
        self._limiter = limiter
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}

    async def chunks(self, length: int, read_chunk: int = READ_CHUNK
                     ) -> AsyncIterator[bytes]:
        """Yield the next ``length`` body bytes, ``read_chunk`` at a time; fewer if the body
        ends first (the caller counts).

        Each chunk is a new ``bytes`` read straight from the socket in the worker thread,
        not a view of a reused buffer: the ASGI server copies every other buffer into a new
        ``bytes`` before it sends it (hypercorn's ``bytes(body)``), and the cache hands its
        fill's chunks to its readers as they are, so a reused buffer cost one more copy of
        each byte, in the event loop."""
        remaining = length
        while remaining:
            data = await trio.to_thread.run_sync(self._response.read, min(read_chunk, remaining),
                                                 limiter=self._limiter)
            if not data:
                return
            remaining -= len(data)
            yield data

    async def read_all(self) -> bytes:
        return await trio.to_thread.run_sync(self._response.read, limiter=self._limiter)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._conn.close, limiter=self._limiter)


async def open_get(url: str, headers: Mapping[str, str], *,
                   limiter: trio.CapacityLimiter | None = None,
                   ssl_context: ssl.SSLContext | None = None) -> BulkResponse:
    """Send ``GET url`` on a connection of its own and read the status line and headers.

    Raises ``OSError`` (``http.client.HTTPException`` included) when the server cannot
    be reached or answers garbage; the caller maps it to its store's error.
    """
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")

    def connect() -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=TIMEOUT,
                context=ssl_context or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                              timeout=TIMEOUT)
        try:
            conn.request("GET", path, headers=dict(headers))
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    try:
        conn, response = await trio.to_thread.run_sync(connect, limiter=limiter)
    except http.client.HTTPException as exc:
        raise OSError(f"bad answer: {exc!r}") from exc
    return BulkResponse(conn, response, limiter)

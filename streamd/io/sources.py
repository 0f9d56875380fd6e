"""Byte sources that are not a network body (tests, benchmarks, imports from disk), and
sources built from others (``ChainedSource``, ``EndOnAbort``).

Each implements ``ByteSource.readinto`` (see ``streamd.io.pipeline``). The HTTP layer adapts
a request body the same way; a client that disconnects should raise ``SourceAborted``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import trio

from streamd.io.errors import SourceAborted

if TYPE_CHECKING:
    from streamd.io.pipeline import ByteSource


class BytesSource:
    """Serves ``data``, at most ``max_read`` bytes per call (short reads, like a socket)."""

    def __init__(self, data: bytes | bytearray | memoryview, *, max_read: int | None = None):
        self._data = memoryview(data)
        self._pos = 0
        self._max_read = max_read
        self.bytes_read = 0

    async def readinto(self, buf: memoryview) -> int:
        await trio.lowlevel.checkpoint()
        n = min(len(buf), len(self._data) - self._pos)
        if self._max_read is not None:
            n = min(n, self._max_read)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        self.bytes_read += n
        return n


class ZeroSource:
    """``size`` zero bytes, generated rather than stored (for multi-GiB sparse tests)."""

    def __init__(self, size: int) -> None:
        self._remaining = size
        self._zeros = b""
        self.bytes_read = 0

    async def readinto(self, buf: memoryview) -> int:
        await trio.lowlevel.checkpoint()
        n = min(len(buf), self._remaining)
        if len(self._zeros) < n:
            self._zeros = bytes(n)
        buf[:n] = memoryview(self._zeros)[:n]
        self._remaining -= n
        self.bytes_read += n
        return n


class FileSource:
    """Reads an open binary file in a worker thread (the caller opens and closes it)."""

    def __init__(self, file: BinaryIO, *, limiter: trio.CapacityLimiter | None = None) -> None:
        self._file = file
        self._limiter = limiter
        self.bytes_read = 0

    async def readinto(self, buf: memoryview) -> int:
        n = await trio.to_thread.run_sync(self._file.readinto, buf, limiter=self._limiter)
        self.bytes_read += n
        return n


class ChainedSource:
    """The bytes of each source in turn: e.g. data already staged, then a request body."""

    def __init__(self, *sources: ByteSource) -> None:
        self._sources = list(sources)

    async def readinto(self, buf: memoryview) -> int:
        while self._sources:
            n = await self._sources[0].readinto(buf)
            if n:
                return n
            self._sources.pop(0)
        return 0


class EndOnAbort:
    """``source`` whose interruption ends the data instead of failing the transfer.

    For a resumable stage: what arrived before the client went away (or stalled) is
    stored and hashed like a complete body, and ``aborted`` then holds the
    ``SourceAborted`` for the caller to report.
    """

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self.aborted: SourceAborted | None = None

    async def readinto(self, buf: memoryview) -> int:
        if self.aborted is not None:
            return 0
        try:
            return await self._source.readinto(buf)
        except SourceAborted as exc:
            self.aborted = exc
        except (OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.aborted = SourceAborted("the upload was interrupted before all image data "
                                         "arrived; resume it")
            self.aborted.__cause__ = exc
        return 0

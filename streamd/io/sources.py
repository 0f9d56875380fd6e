"""Byte sources that are not a network body: for tests, benchmarks and imports from disk.

Each implements ``ByteSource.readinto`` (see ``streamd.io.pipeline``). The HTTP layer adapts
a request body the same way; a client that disconnects should raise ``SourceAborted``.
"""

from __future__ import annotations

from typing import BinaryIO

import trio


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

"""Cutting a stream of borrowed chunks into pieces of given lengths (segments, parts).

Object stores write an image as several requests (Swift segments, S3 parts), each of a
length that has nothing to do with the pipeline's chunks. ``ChunkCursor`` hands out the
next ``n`` bytes as views of the pipeline's own buffers, so cutting copies nothing; the
rest of a chunk waits for the next piece. A view is valid until the cursor is asked for
more, exactly as the chunks it comes from (see ``Store.write``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


class ChunkCursor:
    """The remaining bytes of ``chunks``, taken ``n`` at a time."""

    def __init__(self, chunks: AsyncIterable[memoryview]) -> None:
        self._chunks = aiter(chunks)
        self._pending = memoryview(b"")
        self._ended = False

    async def _fill(self) -> bool:
        """Make ``_pending`` non-empty; False at the end of the stream."""
        while not self._pending:
            if self._ended:
                return False
            try:
                self._pending = memoryview(await anext(self._chunks)).cast("B")
            except StopAsyncIteration:
                self._ended = True
                return False
        return True

    async def at_end(self) -> bool:
        """True when no byte is left (asks the source for its next chunk if needed)."""
        return not await self._fill()

    async def take(self, n: int) -> AsyncIterator[memoryview]:
        """Yield views of the next ``n`` bytes (fewer if the stream ends first)."""
        while n > 0 and await self._fill():
            piece = self._pending[:n]
            self._pending = self._pending[len(piece):]
            n -= len(piece)
            yield piece

    async def readinto(self, buf: memoryview) -> int:
        """Copy up to ``len(buf)`` bytes into ``buf``, filling it unless the stream ends."""
        filled = 0
        async for piece in self.take(len(buf)):
            buf[filled:filled + len(piece)] = piece
            filled += len(piece)
        return filled

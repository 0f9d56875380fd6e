"""A transfer's buffers: a fixed pool, and chunks shared by several consumers.

Memory per transfer is ``chunk_size × depth`` whatever the image size: the producer takes a
free buffer from the pool (waiting when all are in flight: that wait *is* the back-pressure),
fills it, and hands one ``SharedChunk`` to every consumer; the buffer returns to the pool
when the last consumer releases it. Buffers are allocated on first use, so a small upload
allocates one, not ``depth``.

Buffers are anonymous ``mmap``s, not ``bytearray``s: page-aligned, so the file store can
write them with ``O_DIRECT``, and unmapped when dropped, so a finished transfer's memory
goes back to the system instead of staying in the allocator's heap.
"""

from __future__ import annotations

import mmap

import trio


class BufferPool:
    """At most ``depth`` reusable page-aligned buffers of ``chunk_size`` bytes.

    ``in_use``, ``high_water`` and ``allocated`` are there to be asserted on: memory is
    bounded by construction, and tests check the construction rather than timings.
    """

    def __init__(self, chunk_size: int, depth: int) -> None:
        if chunk_size <= 0 or depth <= 0:
            raise ValueError("chunk_size and depth must be positive")
        self.chunk_size = chunk_size
        self.depth = depth
        self.in_use = 0
        self.high_water = 0
        self.allocated = 0
        self._free: list[mmap.mmap] = []
        self._slots = trio.Semaphore(depth)

    def __repr__(self) -> str:
        return (
            f"BufferPool(chunk_size={self.chunk_size}, depth={self.depth}, "
            f"in_use={self.in_use}, high_water={self.high_water})"
        )

    async def acquire(self) -> mmap.mmap:
        """Take a free buffer, waiting until a consumer gives one back if all are in use."""
        await self._slots.acquire()
        if self._free:
            buf = self._free.pop()
        else:
            buf = mmap.mmap(-1, self.chunk_size, flags=mmap.MAP_PRIVATE)
            self.allocated += 1
        self.in_use += 1
        self.high_water = max(self.high_water, self.in_use)
        return buf

    def release(self, buf: mmap.mmap) -> None:
        """Give ``buf`` back; its contents may be overwritten from now on."""
        if len(buf) != self.chunk_size or any(buf is free for free in self._free):
            raise RuntimeError("buffer released twice or not from this pool")
        self._free.append(buf)
        self.in_use -= 1
        self._slots.release()


class SharedChunk:
    """A filled slice of a pool buffer, lent to ``consumers`` readers at once.

    Each consumer calls ``release`` exactly once when done with ``view``; the buffer goes
    back to the pool after the last one.
    """

    __slots__ = ("view", "_buf", "_pool", "_pending")

    def __init__(self, pool: BufferPool, buf: mmap.mmap, size: int, consumers: int) -> None:
        self.view = memoryview(buf)[:size]
        self._buf = buf
        self._pool = pool
        self._pending = consumers

    def release(self) -> None:
        """Mark one consumer done; the last one returns the buffer to the pool."""
        if self._pending <= 0:
            raise RuntimeError("chunk released more times than it has consumers")
        self._pending -= 1
        if self._pending == 0:
            self.view.release()  # a consumer that kept the view fails loudly, not silently
            self._pool.release(self._buf)

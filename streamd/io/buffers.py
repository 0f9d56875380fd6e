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


class BufferBudget:
    """Buffers shared by all the transfers of a process, beyond each transfer's first one.

    Each transfer may hold ``depth`` buffers, but only its first is its own: the others are
    borrowed from here, so memory is ``transfers × chunk_size + count × chunk_size`` at most
    instead of ``transfers × depth × chunk_size``. One upload still gets its full depth; many
    at once (CPU-bound by then, where depth buys nothing) share ``count``. A transfer whose
    client stalls keeps only its own buffer from the others. Freed buffers are kept for the
    next borrower, so a busy server does not map and fault in fresh pages per transfer.
    """

    def __init__(self, chunk_size: int, count: int) -> None:
        if chunk_size <= 0 or count < 0:
            raise ValueError("chunk_size must be positive and count not negative")
        self.chunk_size = chunk_size
        self.count = count
        self.lent = 0
        self._free: list[mmap.mmap] = []
        self._slots = trio.Semaphore(count)

    def __repr__(self) -> str:
        return f"BufferBudget(chunk_size={self.chunk_size}, count={self.count}, lent={self.lent})"

    async def borrow(self) -> mmap.mmap:
        await self._slots.acquire()  # no checkpoint after this: cancelled means not taken
        self.lent += 1
        return self._free.pop() if self._free else _new_buffer(self.chunk_size)

    def give_back(self, buf: mmap.mmap) -> None:
        if len(buf) != self.chunk_size or any(buf is free for free in self._free):
            raise RuntimeError("buffer given back twice or not from this budget")
        self._free.append(buf)
        self.lent -= 1
        self._slots.release()


def _new_buffer(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)


class BufferPool:
    """At most ``depth`` reusable page-aligned buffers of ``chunk_size`` bytes.

    With a ``budget``, the first buffer is the pool's own and the others are borrowed from
    it (see ``BufferBudget``); without one, all ``depth`` are the pool's own.
    ``in_use``, ``high_water`` and ``allocated`` are there to be asserted on: memory is
    bounded by construction, and tests check the construction rather than timings.
    """

    def __init__(self, chunk_size: int, depth: int, budget: BufferBudget | None = None) -> None:
        if chunk_size <= 0 or depth <= 0:
            raise ValueError("chunk_size and depth must be positive")
        if budget is not None and budget.chunk_size != chunk_size:
            raise ValueError("the budget's buffers are not chunk_size long")
        self.chunk_size = chunk_size
        self.depth = depth
        self.in_use = 0
        self.high_water = 0
        self.allocated = 0
        self._budget = budget
        self._own_limit = 1 if budget is not None else depth  # own buffers in use at once
        self._free: list[mmap.mmap] = []  # own buffers not in use
        self._mine: list[mmap.mmap] = []  # every own buffer, to tell them from borrowed ones
        self._slots = trio.Semaphore(depth)
        self._waiting: trio.CancelScope | None = None  # a borrow that an own buffer may end
        self._borrowed: list[mmap.mmap] = []  # borrowed and not given back yet

    def __repr__(self) -> str:
        return (
            f"BufferPool(chunk_size={self.chunk_size}, depth={self.depth}, "
            f"in_use={self.in_use}, high_water={self.high_water})"
        )

    async def acquire(self) -> mmap.mmap:
        """Take a free buffer, waiting until a consumer gives one back if all are in use."""
        await self._slots.acquire()
        try:
            buf = await self._take()
        except BaseException:
            self._slots.release()
            raise
        self.in_use += 1
        self.high_water = max(self.high_water, self.in_use)
        return buf

    async def _take(self) -> mmap.mmap:
        while len(self._mine) - len(self._free) >= self._own_limit:  # own ones all in use
            assert self._budget is not None  # without one, the slots keep own ones free
            # borrow, unless our own buffer comes back first (release cancels the wait)
            scope = self._waiting = trio.CancelScope()
            try:
                with scope:
                    buf = await self._budget.borrow()
                    self._borrowed.append(buf)
                    return buf
            finally:
                self._waiting = None
        if self._free:
            return self._free.pop()
        buf = _new_buffer(self.chunk_size)
        self._mine.append(buf)
        self.allocated += 1
        return buf

    def close(self) -> None:
        """Give every borrowed buffer back to the budget, released or not.

        For the end of a transfer, once nothing can touch its buffers any more: a failed
        one may leave chunks that no consumer released (still queued for a cancelled
        writer, or being filled when the client went away), and the budget must not shrink.
        """
        borrowed, self._borrowed = self._borrowed, []
        for buf in borrowed:
            assert self._budget is not None
            self._budget.give_back(buf)

    def release(self, buf: mmap.mmap) -> None:
        """Give ``buf`` back; its contents may be overwritten from now on."""
        if not any(buf is mine for mine in self._mine):
            if self._budget is None or not any(buf is b for b in self._borrowed):
                raise RuntimeError("buffer released twice or not from this pool")
            self._borrowed = [b for b in self._borrowed if b is not buf]
            self._budget.give_back(buf)
        else:
            if any(buf is free for free in self._free):
                raise RuntimeError("buffer released twice or not from this pool")
            self._free.append(buf)
            if self._waiting is not None:
                self._waiting.cancel()
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

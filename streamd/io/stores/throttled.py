"""A store wrapper that pauses on every chunk: a slow disk or link, for back-pressure tests.

The pause goes through an injected ``sleep`` so that tests can use trio's ``MockClock`` (or
an ``Event``) instead of real time. It declares what the wrapped store declares except hard
links: it stands for a slow store, so data moved into it goes through the pause too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

import trio

from streamd.io.stores.base import Store, StoreCapabilities, StoredObject, can_sweep


class ThrottledStore:
    """``inner`` with a pause before each chunk written or read: ``delay`` seconds, plus
    the chunk's length over ``bytes_per_second`` when that is given (a rate that holds
    whatever chunk sizes the reader and the writer use).

    ``chunks_written`` and ``bytes_written`` count what ``inner`` has consumed, so a test
    can compare it with what the producer has read.
    """

    def __init__(
        self,
        inner: Store,
        *,
        delay: float,
        bytes_per_second: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.delay = delay
        self.bytes_per_second = bytes_per_second
        self._sleep = sleep
        self.chunks_written = 0
        self.bytes_written = 0

    @property
    def capabilities(self) -> StoreCapabilities:
        """``inner``'s, less hard links and local files (a link or a sendfile would move
        data past the pause)."""
        return dataclasses.replace(self.inner.capabilities, hard_links=False, local_files=False)

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Hand ``chunks`` to ``inner``, pausing before each one."""
        return await self.inner.write(_Slowed(self, chunks), key=key, size=size)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview | bytes]:
        """Yield ``inner``'s chunks, pausing before each one."""
        reader = self.inner.read(location, offset, length)
        try:
            async for chunk in reader:
                await self.pause(chunk)
                yield chunk
        finally:
            await reader.aclose()  # type: ignore[attr-defined]

    def pause(self, chunk: memoryview | bytes) -> Awaitable[None]:
        rate = self.bytes_per_second
        return self._sleep(self.delay + (len(chunk) / rate if rate else 0.0))

    async def delete(self, location: str) -> None:
        await self.inner.delete(location)

    async def stat(self, location: str) -> int:
        return await self.inner.stat(location)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def discard_unfinished(self, key: str) -> int:
        """``inner``'s, when it sweeps (it declares ``sweeps`` only then)."""
        if not can_sweep(self.inner):
            return 0
        return await self.inner.discard_unfinished(key)


class _Slowed:
    """``chunks`` with a pause before each; a class, not an async generator, so that a store
    that stops iterating early leaves nothing for the garbage collector to finalize."""

    def __init__(self, store: ThrottledStore, chunks: AsyncIterable[memoryview]) -> None:
        self._store = store
        self._chunks = aiter(chunks)

    def __aiter__(self) -> _Slowed:
        return self

    async def __anext__(self) -> memoryview:
        chunk = await anext(self._chunks)
        await self._store.pause(chunk)
        self._store.chunks_written += 1
        self._store.bytes_written += len(chunk)
        return chunk

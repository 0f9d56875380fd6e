"""A store wrapper that counts what is read from its inner store: how many reads, how many
bytes. The cache's single flight is proven with it (eight readers, one read of the store),
on any store, the memory store and a real Swift alike."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator

from streamd.io.stores.base import Store, StoreCapabilities, StoredObject


class CountingStore:
    """``inner``, with ``reads`` (calls of ``read`` that yielded a chunk or failed) and
    ``bytes_read`` counted. It declares ``inner``'s capabilities less local files (a
    ``sendfile`` would move bytes past the count)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads = 0
        self.bytes_read = 0

    @property
    def capabilities(self) -> StoreCapabilities:
        caps = self.inner.capabilities
        return StoreCapabilities(
            ranged_reads=caps.ranged_reads, sparse_writes=caps.sparse_writes,
            max_readers=caps.max_readers, max_writers=caps.max_writers,
            read_only=caps.read_only)

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        return await self.inner.write(chunks, key=key, size=size)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview | bytes]:
        """``inner``'s chunks, counted."""
        self.reads += 1
        reader = self.inner.read(location, offset, length)
        async with contextlib.aclosing(reader):  # type: ignore[type-var]
            async for chunk in reader:
                self.bytes_read += len(chunk)
                yield chunk

    async def delete(self, location: str) -> None:
        await self.inner.delete(location)

    async def stat(self, location: str) -> int:
        return await self.inner.stat(location)

    async def aclose(self) -> None:
        await self.inner.aclose()

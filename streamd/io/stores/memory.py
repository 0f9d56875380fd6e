"""The memory store: objects kept in a dict. For tests, and as the model other stores follow."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import trio

from streamd.io.errors import ObjectNotFound
from streamd.io.stores.base import StoreCapabilities, StoredObject, check_key, check_range
from streamd.units import KiB

READ_CHUNK = 64 * KiB  # small, so that tests see several chunks without big objects


class MemoryStore:
    """Objects as ``bytes`` in ``self.objects``; location ``memory://<name>/<key>``.

    A write becomes visible only when it completes, like every store's. ``read`` yields
    read-only views of the stored bytes: nothing is copied and nothing needs to be.
    """

    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=False, max_readers=None, max_writers=None,
        hard_links=False,
    )

    def __init__(self, name: str = "memory", *, read_chunk: int = READ_CHUNK) -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self._read_chunk = read_chunk

    def __repr__(self) -> str:
        return f"MemoryStore(name={self.name!r}, objects={len(self.objects)})"

    def _key(self, location: str) -> str:
        prefix = f"memory://{self.name}/"
        key = location.removeprefix(prefix)
        if key == location or key not in self.objects:
            raise ObjectNotFound(f"no such image data in store {self.name!r}")
        return key

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Copy every chunk (they are borrowed), then publish the object at once.

        ``size`` is not needed: the object grows as it is copied.
        """
        check_key(key)
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        await trio.lowlevel.checkpoint()  # a cancelled write publishes nothing
        self.objects[key] = bytes(data)
        return StoredObject(location=f"memory://{self.name}/{key}", size=len(data))

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview]:
        """Yield views of the stored bytes, one checkpoint per chunk."""
        data = memoryview(self.objects[self._key(location)])
        end = offset + check_range(offset, length, len(data))
        for pos in range(offset, end, self._read_chunk):
            await trio.lowlevel.checkpoint()
            yield data[pos : min(pos + self._read_chunk, end)]

    async def delete(self, location: str) -> None:
        """Forget the object; a missing one is already deleted."""
        await trio.lowlevel.checkpoint()
        try:
            del self.objects[self._key(location)]
        except ObjectNotFound:
            pass

    async def stat(self, location: str) -> int:
        """Return the object's size."""
        await trio.lowlevel.checkpoint()
        return len(self.objects[self._key(location)])

    async def aclose(self) -> None:
        """Nothing to release."""

"""A store that keeps nothing: the upload pipeline used only for its digests.

Verifying data that lives elsewhere (an image location's URL) means hashing it exactly as
an upload would — md5, ``os_hash_algo`` and xxh3 in one pass, bounded buffers, the hashers
in their threads — without storing it. ``store_stream`` into this store does that, so the
verification is the upload pipeline and not a second copy of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import trio

from streamd.io.errors import ObjectNotFound
from streamd.io.stores.base import StoreCapabilities, StoredObject, check_key

LOCATION = "discard:"


class DiscardStore:
    """Counts what it is given and forgets it; nothing can be read back."""

    capabilities = StoreCapabilities(
        ranged_reads=False, sparse_writes=True, max_readers=0, max_writers=None
    )

    def __init__(self, name: str = "discard") -> None:
        self.name = name

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        check_key(key)
        n = 0
        async for chunk in chunks:
            n += len(chunk)
        return StoredObject(LOCATION, n)

    def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        raise ObjectNotFound(f"store {self.name!r} keeps nothing to read")

    async def delete(self, location: str) -> None:
        await trio.lowlevel.checkpoint()

    async def stat(self, location: str) -> int:
        raise ObjectNotFound(f"store {self.name!r} keeps nothing")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

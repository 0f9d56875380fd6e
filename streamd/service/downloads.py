"""Downloads of image data: which image a caller may read, and from which copy.

A download goes out one of two ways, and the caller (``streamd.http.data``) picks by what its
server offers: as chunks read from a store (any store, any transport), or as an ``OpenFile``
that the server hands to ``os.sendfile`` (a store whose objects are local files, when the
connection is plaintext HTTP/1.1). An image in a cached store goes through this node's
read-through cache (``streamd.service.cache``): a complete entry is such a file too, a miss
reads behind the image's one fill. Either way the download holds a transfer slot while it
runs, and a copy that fails is left for the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import Forbidden
from streamd.io import ObjectNotFound, OpenFile, StoreError, has_local_files
from streamd.registry import ImageRecord
from streamd.service import cache, transfer_metrics
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)


async def image_for_download(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    """The image whose data ``ctx`` wants; its ``location`` is None when it has no data."""
    record = await visible_image(rt, ctx, image_id)  # members of a shared image see it too
    policy.ensure_may_download(ctx, record)
    if record.status == "deactivated" and not ctx.is_admin:
        raise Forbidden(
            "The requested image has been deactivated. Image data download is forbidden."
        )
    if record.status not in ("active", "deactivated"):
        # queued, saving, killed…: no data to serve (its location, if any, is not complete)
        return dataclasses.replace(record, location=None)
    return record


@dataclasses.dataclass(frozen=True)
class Download:
    """The bytes of one download: ``file`` to send with ``os.sendfile`` (the range is the
    caller's ``[offset, offset + length)`` of it), or else ``chunks`` to send as they come."""

    file: OpenFile | None
    chunks: AsyncIterator[memoryview | bytes] | None


@contextlib.asynccontextmanager
async def open_download(
    rt: Runtime, record: ImageRecord, offset: int, length: int, *, zero_copy: bool
) -> AsyncIterator[Download]:
    """Hold a transfer slot and yield the bytes ``[offset, offset + length)`` of ``record``.

    With ``zero_copy`` (the caller can ``sendfile``), an image whose first copy is a local
    file comes as that file, opened; otherwise, and whenever that file cannot be opened or
    is shorter than recorded, as chunks (``read_data``), which go on to the next copy when
    one fails. The file is closed and the slot released when the block ends, however it
    ends (a client gone, a cancellation). Raises ServiceUnavailable (too many transfers).
    """
    assert record.locations
    with rt.transfers.slot():
        # an image of a cached store: an entry (sent with sendfile too), behind the fill, or
        # from the store uncached (streamd.service.cache); None: not a cached store
        async with cache.cached_read(rt, record, offset, length, zero_copy=zero_copy,
                                     read=read_copies) as cached:
            if isinstance(cached, OpenFile):
                yield Download(file=cached, chunks=None)
                return
            if cached is not None:
                yield Download(file=None, chunks=cached)
                return
        opened = await open_local(rt, record, offset + length) if zero_copy else None
        if opened is not None:
            with opened:
                yield Download(file=opened, chunks=None)
            return
        reader = read_copies(rt, record, offset, length)
        async with contextlib.aclosing(reader):
            yield Download(file=None, chunks=reader)


async def open_local(rt: Runtime, record: ImageRecord, end: int) -> OpenFile | None:
    """The image's first copy opened as a local file holding at least ``end`` bytes, or
    None (not a local-file store, missing, failing, short: the chunk path decides what
    to answer, or which copy to read instead)."""
    copy = record.locations[0]
    store = rt.stores.holding(copy.store)
    if not has_local_files(store):
        return None
    try:
        opened = await store.open_file(copy.location)
    except (StoreError, ObjectNotFound) as exc:
        log.warning("READ image=%s store=%s could not be opened as a local file (%s)",
                    record.id, copy.store, exc)
        return None
    if opened.size < end:
        opened.close()
        return None
    return opened


@contextlib.asynccontextmanager
async def read_data(
    rt: Runtime, record: ImageRecord, offset: int, length: int
) -> AsyncIterator[AsyncIterator[memoryview | bytes]]:
    """Hold a transfer slot and yield the chunks of ``[offset, offset + length)``.

    The bytes come from the image's first copy whose store answers; a store that fails
    (``StoreError``, or the copy is missing), before the first byte or in the middle, is
    left for the next copy, which goes on from the byte where the last one stopped (every
    store reads ranges). Each chunk is valid until the next one is asked for. Raises
    ServiceUnavailable (too many transfers); when every copy fails, the last store's
    error surfaces on the next chunk.
    """
    async with open_download(rt, record, offset, length, zero_copy=False) as download:
        assert download.chunks is not None
        yield download.chunks


async def read_copies(
    rt: Runtime, record: ImageRecord, offset: int, length: int
) -> AsyncIterator[memoryview | bytes]:
    """The bytes ``[offset, offset + length)`` from the image's copies, each failing one
    left for the next (see ``read_data``); no slot held (the cache's fills use it)."""
    sent = 0
    copies = record.locations
    for n, copy in enumerate(copies):
        last = n == len(copies) - 1
        start = sent
        try:
            store = rt.stores.holding(copy.store)
            reader = store.read(copy.location, offset + sent, length - sent)
            async with contextlib.aclosing(reader):  # type: ignore[type-var]
                async for chunk in reader:
                    sent += len(chunk)
                    yield chunk
            return
        except (StoreError, ObjectNotFound) as exc:
            transfer_metrics.failed("read", record.id, copy.store, exc, logged=not last)
            if last:
                raise
            log.warning("READ image=%s store=%s failed after %d of %d bytes (%s); going on "
                        "from store %s", record.id, copy.store, sent, length, exc,
                        copies[n + 1].store)
        finally:  # once per copy read, not per chunk
            transfer_metrics.read(copy.store, sent - start)

"""The read-through cache's policy: what a download reads, Glance's cache API, the upkeep.

A download of an image in a cached store (``NodeCache.caches``) goes, in this order:

1. A complete entry whose size and xxh3 are the registry's: a hit, sent from the entry
   (``os.sendfile`` when the server can). An entry the registry disagrees with (the image
   was replaced or deleted through another node) is dropped here, at its next use.
2. A fill in flight: the download reads behind it. A download of the whole image, or a
   range under ``cache_fill_on_range``, starts the fill if there is none (a range pins it,
   so that it runs to the end after the range is sent).
3. Otherwise (the image does not fit under ``cache_max_size``; a range far beyond what the
   fill has written, ``FAR_AHEAD``; a range with ``cache_fill_on_range`` off), straight from
   the store, uncached. A fill that stops before the bytes a reader needs leaves that reader
   to go on from the store at the byte where it stopped.

The API is Glance's ``/v2/cache`` (admin-only, its messages and statuses, recorded from a
Glance 33 peer in ``tests/glance_recordings/cache.json``). The upkeep is three periodic
tasks in the server's periodic nursery (``streamd.service.periodic``): the cleaner (stalled
fills, stray files, entries the registry no longer backs), the pruner (back within
``cache_max_size`` after it was lowered; it also saves the hit counts) and the prefetcher
(queued images, ``cache_prefetch_concurrency`` fills at once, woken at once by a queue
request). Their waits are ``trio.sleep``, so tests drive them with trio's ``MockClock``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden, NotFound, StreamdError
from streamd.io import OpenFile
from streamd.io.cache import Fill, FillStopped
from streamd.registry import ImageRecord
from streamd.service.access import visible_image
from streamd.service.cadence import every
from streamd.service.node_cache import HITS, MISSES, SERVED, STORE_READ, NodeCache
from streamd.service.runtime import Runtime
from streamd.units import MiB

log = logging.getLogger(__name__)

# a range that starts this far beyond what the fill has written is read from the store
# rather than waiting for the fill to get there (a 1 MiB range near the end of a cold
# 1 GiB image would otherwise wait for the whole fill)
FAR_AHEAD = 64 * MiB
CLEAR_TARGETS = ("", "cache", "queue")

Chunks = AsyncIterator[memoryview | bytes]
# reads [offset, offset + length) of an image from its stores (``downloads.read_copies``)
CopiesReader = Callable[[Runtime, ImageRecord, int, int], Chunks]


class CacheOff(StreamdError):
    """No store of this node is cached: there is no cache to manage."""

    status = 404


# -- downloads ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def cached_read(
    rt: Runtime, record: ImageRecord, offset: int, length: int, *, zero_copy: bool,
    read: CopiesReader,
) -> AsyncIterator[OpenFile | Chunks | None]:
    """``[offset, offset + length)`` of ``record`` through the cache: an opened complete
    entry (``zero_copy``), chunks (from an entry, behind a fill, or from the store when the
    image is not cached), or None when the image's store is not cached (the caller reads
    it as it would without a cache)."""
    node = rt.cache
    if node is None or not node.caches(record):
        yield None
        return
    assert record.size is not None and record.xxh3
    cache = node.cache
    entry = cache.entries.get(record.id)
    if entry is not None and (entry.size, entry.xxh3) != (record.size, record.xxh3):
        log.warning("CACHE image=%s entry dropped: the registry records other data (%d "
                    "bytes, xxh3 %s; the entry has %d, %s)", record.id, record.size,
                    record.xxh3, entry.size, entry.xxh3)
        await cache.drop(record.id)
    opened = cache.open_entry(record.id)
    if opened is not None:
        HITS.inc()
        log.info("CACHE image=%s hit offset=%d length=%d", record.id, offset, length)
        with opened:
            if zero_copy:
                SERVED.labels("cache").inc(length)
                yield opened
            else:
                async with contextlib.aclosing(_counted(cache.read_file(opened, offset, length),
                                                        "cache")) as chunks:
                    yield chunks
        return
    MISSES.inc()
    whole = offset == 0 and length == record.size
    fill = cache.fills.get(record.id)
    if fill is None and (whole or rt.settings.cache_fill_on_range):
        fill = cache.start_fill(record.id, record.size, record.xxh3,
                                functools.partial(_from_store, read, rt, record),
                                pinned=not whole)
    if fill is None or offset > fill.written + FAR_AHEAD:
        log.info("CACHE image=%s miss offset=%d length=%d: from store %s%s", record.id, offset,
                 length, record.store, "" if fill is None else " (beyond the fill)")
        async with contextlib.aclosing(_from_store(read, rt, record, offset, length)) as chunks:
            yield chunks
        return
    log.info("CACHE image=%s miss offset=%d length=%d: reading behind the fill (%d of %d "
             "bytes written, %d readers)", record.id, offset, length, fill.written,
             fill.size, fill.readers)
    async with contextlib.aclosing(_behind(fill, read, rt, record, offset, length)) as chunks:
        yield chunks


async def _counted(chunks: Chunks, source: str) -> Chunks:
    served = SERVED.labels(source)
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            served.inc(len(chunk))
            yield chunk


async def _from_store(read: CopiesReader, rt: Runtime, record: ImageRecord, offset: int,
                      length: int) -> Chunks:
    """The store's bytes, counted (a fill's source, or an uncached download)."""
    async with contextlib.aclosing(read(rt, record, offset, length)) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            STORE_READ.inc(len(chunk))
            yield chunk


async def _behind(fill: Fill, read: CopiesReader, rt: Runtime, record: ImageRecord,
                  offset: int, length: int) -> Chunks:
    """Read behind ``fill``; if it stops short, go on from the store."""
    served = SERVED.labels("cache")
    try:
        async with contextlib.aclosing(fill.read(offset, length)) as chunks:
            async for chunk in chunks:
                served.inc(len(chunk))
                yield chunk
        return
    except FillStopped as stop:
        position = stop.position
    log.info("CACHE image=%s fill stopped at byte %d: the rest from store %s", record.id,
             position, record.store)
    store_served = SERVED.labels("store")
    rest = _from_store(read, rt, record, position, offset + length - position)
    async with contextlib.aclosing(rest) as chunks:
        async for chunk in chunks:
            store_served.inc(len(chunk))
            yield chunk


async def forget(rt: Runtime, image_id: str) -> None:
    """Drop an image from this node's cache (it was deleted)."""
    if rt.cache is not None and await rt.cache.cache.drop(image_id):
        log.info("CACHE image=%s dropped: the image was deleted", image_id)


# -- Glance's /v2/cache API ----------------------------------------------------------------------


def _node(rt: Runtime) -> NodeCache:
    if rt.cache is None:
        raise CacheOff("This node has no image cache: no store is cached (set cached = true "
                       "in a store's table, or add a swift, s3 or http store).")
    return rt.cache


def _ensure_admin(ctx: RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"You are not authorized to complete {action} action.")


async def _image(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    """The image, or 404 with the message of Glance's cache API."""
    try:
        return await visible_image(rt, ctx, image_id)
    except NotFound:
        raise NotFound(f"Image {image_id} not found.") from None


def listing(rt: Runtime, ctx: RequestContext) -> dict[str, Any]:
    """``GET /v2/cache``: the complete entries and the queued image ids, as Glance."""
    _ensure_admin(ctx, "cache_list")
    cache = _node(rt).cache
    return {
        "cached_images": [
            {"id": e.serial, "image_id": e.image_id, "last_accessed": e.last_accessed,
             "last_modified": e.last_modified, "size": e.size, "hits": e.hits,
             "checksum": None}
            for e in sorted(cache.entries.values(), key=lambda e: e.serial)],
        "queued_images": list(cache.queued),
    }


async def queue(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    """``PUT /v2/cache/{image_id}``: queue an active image and wake the prefetcher."""
    record = await _image(rt, ctx, image_id)  # Glance looks the image up first
    _ensure_admin(ctx, "cache_image")
    node = _node(rt)
    if record.status != "active":
        raise BadRequest("Only images with status active can be targeted for queueing")
    if record.id not in node.cache.entries:
        node.cache.queue(record.id)
        await node.cache.save()
        node.wake_prefetcher()


async def delete(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    """``DELETE /v2/cache/{image_id}``: drop its entry, fill and place in the queue."""
    _ensure_admin(ctx, "cache_delete")
    node = _node(rt)
    await _image(rt, ctx, image_id)  # 404 for an image that does not exist
    await node.cache.drop(image_id)


async def clear(rt: Runtime, ctx: RequestContext, target: str | None) -> None:
    """``DELETE /v2/cache``: the entries, the queue or both (``x-image-cache-clear-target``)."""
    _ensure_admin(ctx, "cache_delete")
    target = (target or "").strip()
    if target not in CLEAR_TARGETS:
        raise BadRequest("If provided 'x-image-cache-clear-target' must be 'cache', 'queue' "
                         "or empty string.")
    await _node(rt).cache.clear(entries=target in ("", "cache"), queue=target in ("", "queue"))


async def prune(rt: Runtime, ctx: RequestContext | None = None) -> dict[str, int]:
    """``POST /v2/cache/prune`` (and the pruner): back within ``cache_max_size``."""
    if ctx is not None:
        _ensure_admin(ctx, "cache_prune")
    cache = _node(rt).cache
    files, size = cache.prune()
    await cache.save()
    return {"total_files_pruned": files, "total_bytes_pruned": size}


async def clean(rt: Runtime, ctx: RequestContext | None = None) -> int:
    """``POST /v2/cache/clean`` (and the cleaner): cancel stalled fills, remove stray files,
    drop entries the registry no longer backs; return how many things were removed."""
    if ctx is not None:
        _ensure_admin(ctx, "cache_clean")
    cache = _node(rt).cache
    removed = await cache.clean(rt.settings.cache_stall_time)
    for image_id, entry in list(cache.entries.items()):
        try:
            record = await rt.db(rt.registry.get, image_id)
        except NotFound:
            record = None
        if record is None or (record.size, record.xxh3) != (entry.size, entry.xxh3):
            log.info("CACHE image=%s entry dropped by the cleaner: %s", image_id,
                     "the image is gone" if record is None else "the registry records "
                     "other data")
            await cache.drop(image_id)
            removed += 1
    return removed


# -- upkeep --------------------------------------------------------------------------------------


async def prefetch(rt: Runtime, read: CopiesReader) -> int:
    """Fill the queued images, ``cache_prefetch_concurrency`` at a time; return how many
    became entries. An image that is gone, not active, not in a cached store or too big
    leaves the queue with a log line."""
    node = _node(rt)
    cache = node.cache
    limiter = trio.CapacityLimiter(rt.settings.cache_prefetch_concurrency)
    filled = 0

    async def one(image_id: str) -> None:
        nonlocal filled
        async with limiter:
            try:
                record = await rt.db(rt.registry.get, image_id)
            except NotFound:
                record = None
            if image_id not in cache.queued:
                return  # dequeued (the queue cleared, the image dropped) while looked up
            why = None
            if record is None or record.status != "active":
                why = "the image is gone or not active"
            elif not node.caches(record):
                why = f"its store {record.store} is not cached"
            if why is not None or record is None:
                log.info("CACHE image=%s leaves the queue: %s", image_id, why)
                with contextlib.suppress(ValueError):
                    cache.queued.remove(image_id)
                return
            if record.id in cache.entries:
                with contextlib.suppress(ValueError):
                    cache.queued.remove(image_id)
                return
            assert record.size is not None and record.xxh3
            fill = cache.start_fill(
                record.id, record.size, record.xxh3,
                functools.partial(_from_store, read, rt, record), pinned=True)
            if fill is None:
                with contextlib.suppress(ValueError):
                    cache.queued.remove(image_id)
                return
            log.info("CACHE image=%s prefetching from store %s", image_id, record.store)
            await fill.done.wait()
            if fill.state == "complete":
                filled += 1

    async with trio.open_nursery() as nursery:
        for image_id in list(cache.queued):
            nursery.start_soon(one, image_id)
    await cache.save()
    return filled


async def run_cleaner(rt: Runtime) -> None:
    """``clean`` every ``cache_clean_interval`` seconds until cancelled."""
    await every(rt.settings.cache_clean_interval, functools.partial(clean, rt),
                "cache cleaner pass")


async def run_pruner(rt: Runtime) -> None:
    """``prune`` (and save the hit counts) every ``cache_prune_interval`` seconds."""
    await every(rt.settings.cache_prune_interval, functools.partial(prune, rt), "cache pruner pass")


async def run_prefetcher(rt: Runtime, read: CopiesReader) -> None:
    """``prefetch`` every ``cache_prefetch_interval`` seconds, or at once when an image is
    queued through the API."""
    node = _node(rt)
    interval = rt.settings.cache_prefetch_interval
    while True:
        with trio.move_on_after(interval):
            await node.wake.wait()
        node.wake = trio.Event()
        try:
            await prefetch(rt, read)
        except Exception:
            log.exception("cache prefetcher pass failed; next try in %gs", interval)

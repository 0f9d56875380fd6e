"""This node's read-through cache as the runtime holds it, and its counters.

``open_node_cache`` opens ``streamd.io.cache`` in ``settings.image_cache_dir`` when some
store is cached (``cached`` in its table: true by default for swift, s3 and http stores),
for as long as the runtime's block; it yields None when no store is cached, or when
another process of this server holds the directory (a worker, when ``workers`` > 1: it
serves straight from the stores). What the cache does per download, the API and the upkeep
are ``streamd.service.cache``.

The counters are prometheus-client's, in its default registry, served at ``GET /metrics``
(``streamd.http.metrics``); the cache reports its events (``on_event``) to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from prometheus_client import Counter, Gauge

from streamd.config import Settings
from streamd.io.cache import ImageCache, open_image_cache
from streamd.registry import ImageRecord
from streamd.service.stores import StoreSet

log = logging.getLogger(__name__)

HITS = Counter("streamd_cache_hits", "Downloads served from a complete cache entry")
MISSES = Counter("streamd_cache_misses", "Downloads of a cached store's image not cached yet")
SERVED = Counter("streamd_cache_served_bytes",
                 "Bytes of downloads of cached stores' images, by where they came from "
                 "(cache: an entry or a fill being written; store: read for the download)",
                 ["source"])
STORE_READ = Counter("streamd_cache_store_read_bytes",
                     "Bytes read from cached stores, by fills and by uncached downloads")
FILLS = Counter("streamd_cache_fills",
                "Cache fills by how they ended (complete, cancelled, failed, mismatch)",
                ["result"])
FILLS_IN_FLIGHT = Gauge("streamd_cache_fills_in_flight", "Cache fills running now")
EVICTIONS = Counter("streamd_cache_evictions", "Cache entries evicted to make room")
UNCACHED = Counter("streamd_cache_uncached",
                   "Downloads served uncached: the image did not fit in cache_max_size")
CACHE_BYTES = Gauge("streamd_cache_size_bytes",
                    "Bytes held by cache entries and reserved by fills in flight")


@dataclass
class NodeCache:
    """The cache, the ids of the cached stores, and the prefetcher's wake-up call."""

    cache: ImageCache
    cached_stores: set[str]
    wake: trio.Event = field(default_factory=trio.Event)

    def caches(self, record: ImageRecord) -> bool:
        """Does a download of ``record`` go through the cache? Its first copy is in a cached
        store and the registry has the size and xxh3 an entry is checked against."""
        return (record.store in self.cached_stores and record.size is not None
                and bool(record.xxh3))

    def wake_prefetcher(self) -> None:
        """Run the prefetcher's next pass now (it renews ``wake`` as each pass starts, so a
        request made during a pass runs another one)."""
        self.wake.set()


def cached_store_ids(stores: StoreSet) -> set[str]:
    """The stores whose tables say ``cached`` (every non-file store unless told not to)."""
    return {store_id for store_id, spec in stores.specs.items() if spec.options.get("cached")}


def _on_event(cache: list[ImageCache]) -> Callable[[str, str, int], None]:
    def record(event: str, image_id: str, size: int) -> None:
        if event == "start":
            FILLS_IN_FLIGHT.inc()
        elif event == "evict":
            EVICTIONS.inc()
        elif event == "uncached":
            UNCACHED.inc()
        else:
            FILLS_IN_FLIGHT.dec()
            FILLS.labels(event).inc()
        if cache:
            CACHE_BYTES.set(cache[0].used)
    return record


@asynccontextmanager
async def open_node_cache(
    settings: Settings, stores: StoreSet, limiter: trio.CapacityLimiter, *,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[NodeCache | None]:
    """This node's cache for as long as the block, or None (no cached store; the directory
    held by another process)."""
    cached = cached_store_ids(stores)
    if not cached:
        yield None
        return
    holder: list[ImageCache] = []
    async with open_image_cache(settings.image_cache_dir, settings.cache_max_size,
                                limiter=limiter, clock=clock, on_event=_on_event(holder),
                                read_chunk=settings.read_chunk_size,
                                fill_streams=settings.cache_fill_streams,
                                fill_piece=settings.cache_fill_piece) as cache:
        if cache is None:
            yield None
            return
        holder.append(cache)
        CACHE_BYTES.set(cache.used)
        log.info("cache in %s for stores %s: %d entries, %d of %d bytes", cache.root,
                 ", ".join(sorted(cached)), len(cache.entries), cache.used, cache.max_size)
        yield NodeCache(cache, cached)

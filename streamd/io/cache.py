"""The local read-through cache: whole images as files under ``cache_dir``, filled once.

Bytes only: the service layer (``streamd.service.cache``) decides which images are cached
and hands a fill its source (the store's reader) and what to check the bytes against (size,
xxh3); this module keeps the files, the fills, the size limit and the index.

- **Single flight.** An image has at most one ``Fill`` at a time. It writes a temp file
  (``posix.temp_path``: hidden, ``.tmp``), with ``fill_streams`` ranged reads of
  ``fill_piece`` bytes at once (``streamd.io.striped``), and every reader of that image
  reads behind the bytes it has in a row from the start
  (``Fill.read``) as it grows: the store sees each byte once. Readers that keep up are
  handed the chunks the fill has just written (the same ``bytes``, copied once from the
  store's buffer, for all of them); one further behind reads the file. (Sending the growing
  file itself with ``os.sendfile`` in 2-8 MiB windows was tried and measured slower: 8
  clients behind one fill of a 1 GiB image, 6.4-8.5 s this way, 7.2-9.9 s with windows, and
  more server CPU. Tried again on 2026-12-05, with the blocking sendfile thread and 8 MiB
  windows that wait for the fill, A/B on Swift, 5 rounds: 8 clients 5.0-6.3 s at 3.1-4.9
  server CPU-s this way, 6.2-7.0 s at 5.8-6.5 with sendfile; one client 2.8-3.1 s at 1.4-1.7
  vs 3.7-4.6 s at 2.8-3.8.) A fill is
  wanted while it has readers or is *pinned* (the cache's own policy wants it: a queued
  image, a ranged read that starts a fill); one nobody wants any more is cancelled and its
  temp file removed. Fills run in the cache's own nursery (``open_image_cache``), never in
  a request's, so a client that goes away stops only its own reading.
- **Through the page cache.** A fill writes its file with plain ``pwrite``, so the entry is
  in the page cache when a hit sends it. ``O_DIRECT`` (an aligned buffer, the file read back
  to verify) was tried on 2026-12-06: this VM charges ~2 CPU-s per GiB for memory the kernel
  had not used lately (a 2 GiB ``dd`` write: 3.3-5.6 s of system time cold, 0.46 s warm,
  0.41 s with ``O_DIRECT``), and the fill's ``pwrite`` carried it (2.6-3.7 of the server's
  3.7-4.6 CPU-s for one cold 1 GiB download from Swift). ``O_DIRECT`` brought that download
  to 1.5-1.8 server CPU-s but not its time (5.3-5.9 s either way: Swift's object server,
  one process, sets it, and during a miss it pays part of the new memory itself: 1.8-3.0
  CPU-s per GiB against 1.4-1.5 when curl reads alone, not raised by a slower reader;
  later session note of 2026-12-06), 8 cold clients got slower (8.4-10.8 s against 7.3-9.1),
  and a hit would read the disk instead of memory. Not kept.
- **A spare file.** An entry evicted or dropped while the cache has no spare becomes the
  spare (``SPARE``), and the next fill overwrites it in place instead of creating a file:
  pages the page cache still holds are rewritten, not allocated. Why: this VM hands memory
  freed back to its host at once (``/sys/module/page_reporting/parameters``: order 9,
  ``min_free_ms`` 0), and a page it gets back costs ~2.4 s of system time per GiB (``dd`` of
  1 GiB: a new file 2.47 s, the same file again 0.10 s). A/B on the bench's Swift, a 1 GiB
  image dropped from the cache before each download, rounds 2-8 of 8 (scratch script,
  session note of 2026-12-06): a cold download 2.97-4.04 s at 1.87-2.95 server CPU-s with
  a new file, 2.74-2.98 s at 1.04-1.43 reusing the dropped one (Swift's own GET of 1 GiB
  beside them 2.03-2.52 s). It saves only while the spare's pages are still in memory:
  this VM's DAMON pages out file pages idle for a minute (``pageout``, ``min_age`` 60 s),
  and after 4 minutes 644-714 of its 1024 MiB were left and the download cost 2.01-2.08
  server CPU-s (1.11-1.52 after 1 s, 2 rounds each). The first fill after a start has no
  spare. The spare's bytes count in ``used`` (the limit holds), a fill that makes room
  keeps the first entry it evicts as its spare, clear and prune remove it, and a restart
  removes it with the temp files. A download still sending the old entry keeps it open:
  the fill then takes a write lease, which the kernel refuses while another descriptor is
  open, and creates a new file instead.
- **Integrity.** A fill becomes an entry only once its size and xxh3-128 match what it was
  told to expect; then it is fsynced and renamed to ``<image_id>``. Anything else is
  discarded (and reported: ``on_event``). A temp name is never served after a restart: the
  start-up scan removes every temp file (a ``kill -9`` mid-fill leaves only temp names).
- **A hard limit.** Complete entries plus the sizes of the fills in flight (reserved when a
  fill starts) and the spare file never exceed ``max_size``: a fill that would pass it
  evicts least-recently used entries first, and if it still does not fit it is refused
  (the caller reads the store, uncached).
- **The index** is a small JSON file in ``cache_dir`` (``index.json``), written atomically
  on every change of the set of entries, and with the hit counts and access times at each
  upkeep pass and at close. It is local, not in the registry, because the cache is per node:
  its entries live and die with this node's files (another node neither has them nor can
  check them), and hits and access times change at every download, which would be write
  load on the shared registry for what only this node reads. The registry stays the
  authority on what an image's bytes are: an entry holds the size and xxh3 it was verified
  against, and the service layer drops it when the registry says otherwise. A file
  without an index entry (a crash between the rename and the index write) is removed at
  start-up, as is an entry whose file is gone or has another size.
- One process per ``cache_dir``: an ``flock`` on ``cache_dir/.lock``; another process
  (a worker, when ``workers`` > 1) gets ``CacheBusy`` and serves without a cache.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio
import xxhash

from streamd.io import posix
from streamd.io.errors import StoreError
from streamd.io.stores.base import OpenFile
from streamd.io.striped import RangeSource, copy_striped
from streamd.units import KiB, MiB

log = logging.getLogger(__name__)

INDEX = "index.json"
LOCK = ".lock"
SPARE = ".spare.tmp"  # a temp name: the start-up scan removes it (see "A spare file")
READ_CHUNK = 512 * KiB  # a reader's buffer: as the file store's reads
# the fill's latest chunks kept in memory for the readers that keep up with it: 8 of the
# swift store's 4 MiB chunks (``bulk_get.READ_CHUNK``), per fill, however many read it (a
# reader further behind reads the file). Fewer chunks than that and 8 readers of one fill
# keep falling out of it (measured with 4 MiB chunks and 8 MiB kept: slower than 512 KiB).
RECENT_BYTES = 32 * MiB
# a fill's reservation is the image's size: the file is written sparse-free, whole
# a fill reads its store with FILL_STREAMS ranged reads at once, FILL_PIECE bytes each
# (``streamd.io.striped``); an image of one piece or less is one read
FILL_STREAMS = 1  # more pays only where the store, not this machine's CPU, is the limit
FILL_PIECE = 64 * MiB

# (event, image_id, bytes): "start", then one of "complete", "cancelled", "failed",
# "mismatch" per fill; "evict" per entry evicted; "uncached" per fill refused for room
EventHook = Callable[[str, str, int], None]


class CacheBusy(Exception):
    """Another process holds this ``cache_dir``."""


class FillStopped(Exception):
    """The fill a reader read behind ended without the bytes at ``position``: the reader goes
    on from the store."""

    def __init__(self, position: int) -> None:
        super().__init__(f"the cache fill stopped before byte {position}")
        self.position = position


@dataclasses.dataclass
class CacheEntry:
    """A complete, verified image file: what the index keeps of it (Glance's listing fields
    are ``serial`` as ``id``, ``last_accessed``, ``last_modified``, ``size``, ``hits``)."""

    image_id: str
    size: int
    xxh3: str
    serial: int
    last_modified: float
    last_accessed: float
    hits: int = 0


class Fill:
    """The one fill of an image in flight: a temp file that grows from the store's reader.

    ``written`` bytes from the start of the file are there for readers; ``state`` is
    "running", then "complete" (renamed to the entry's name) or "failed" (removed).
    """

    def __init__(self, cache: ImageCache, image_id: str, size: int, xxh3: str, *,
                 pinned: bool, now: float) -> None:
        self.cache = cache
        self.image_id = image_id
        self.size = size
        self.xxh3 = xxh3
        self.path = posix.temp_path(cache.root / image_id)
        self.written = 0
        self.state = "running"
        self.readers = 0
        self.pinned = pinned
        self.last_progress = now
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self._changed = trio.Event()
        # (offset, bytes) of the latest chunks written, oldest first, RECENT_BYTES at most
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque()
        self._recent_bytes = 0

    @property
    def wanted(self) -> bool:
        return self.pinned or self.readers > 0

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _advanced(self, written: int, data: bytes) -> None:
        """The file holds every byte up to ``written`` now, the last of them ``data``: keep
        it for readers, tell them."""
        self._recent.append((written - len(data), data))
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_BYTES and len(self._recent) > 1:
            self._recent_bytes -= len(self._recent.popleft()[1])
        self.written = written
        self._notify()

    def _recent_at(self, position: int, end: int) -> bytes | None:
        """The bytes from ``position`` (up to ``end``) that the fill still holds in memory,
        or None. A chunk that is wanted whole is handed over as the very object the fill
        wrote: the server sends it without copying it again (hypercorn copies any other
        buffer into a new ``bytes``)."""
        if not self._recent or position < self._recent[0][0]:
            return None
        for start, data in reversed(self._recent):
            if start <= position:
                first, last = position - start, min(len(data), end - start)
                return data if (first, last) == (0, len(data)) else data[first:last]
        return None

    def cancel_if_unwanted(self) -> None:
        """Cancel the fill when nobody wants it and it still has bytes to fetch (a fill
        that has them all is only being checked and committed: let it finish)."""
        if not self.wanted and self.state == "running" and self.written < self.size:
            log.info("CACHE image=%s fill cancelled: nobody reads it any more (%d of %d "
                     "bytes)", self.image_id, self.written, self.size)
            self.cancel()

    def cancel(self) -> None:
        """Stop the fill; its temp file is removed as its task ends. It leaves the cache's
        fills at once, so that a download arriving meanwhile starts a new one instead of
        joining one that will not finish."""
        self.pinned = False
        self.scope.cancel()
        if self.cache.fills.get(self.image_id) is self:
            del self.cache.fills[self.image_id]

    async def read(self, offset: int, length: int) -> AsyncIterator[memoryview | bytes]:
        """Yield ``[offset, offset + length)`` as the fill writes it: the fill's own chunks
        while the reader keeps up with it (``RECENT_BYTES``), else the file; raise
        ``FillStopped`` (with the first byte not yet sent) if the fill ends without it.

        The reader counts as wanting the fill until this generator is closed; closing it
        (a client gone) cancels the fill only if nobody else wants it.
        """
        self.readers += 1
        fd = -1
        try:
            # opened in the event loop, in the same step as the state is looked at, so a
            # rename between the two cannot be missed (a local open does not block)
            final = self.cache.root / self.image_id
            try:
                fd = os.open(final if self.state == "complete" else self.path,
                             os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                # every byte in, the rename to the entry's name under way in its thread
                # (the state changes after it): the same bytes under that name
                if self.state != "running" or self.written < self.size:
                    raise FillStopped(offset) from None
                try:
                    fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise FillStopped(offset) from None
            position, end = offset, offset + length
            buf: memoryview | None = None
            while position < end:
                while self.written <= position and self.state == "running":
                    await self._changed.wait()
                if self.written <= position:
                    raise FillStopped(position)
                # from memory while the reader keeps up with the fill, else from the file
                data = self._recent_at(position, end)
                if data is None:
                    if buf is None:
                        buf = memoryview(bytearray(min(length, self.cache.read_chunk)))
                    want = min(end, self.written) - position
                    got = await self.cache.calls.pread(fd, buf[: min(want, len(buf))],
                                                       position)
                    if got == 0:
                        raise FillStopped(position)
                    data = buf[:got]
                yield data
                position += len(data)
        finally:
            if fd >= 0:
                os.close(fd)
            self.readers -= 1
            self.cancel_if_unwanted()


class ImageCache:
    """The cache of one node; made by ``open_image_cache``, which owns its fills' nursery."""

    def __init__(self, root: Path, max_size: int, *, nursery: trio.Nursery,
                 limiter: trio.CapacityLimiter | None, clock: Callable[[], float],
                 on_event: EventHook, read_chunk: int = READ_CHUNK,
                 fill_streams: int = FILL_STREAMS, fill_piece: int = FILL_PIECE) -> None:
        self.root = root
        self.fill_streams = fill_streams
        self.fill_piece = fill_piece
        self.max_size = max_size
        self.clock = clock
        self.read_chunk = read_chunk
        self.calls = posix.BlockingCalls(limiter, "the image cache")
        self.entries: dict[str, CacheEntry] = {}
        self.queued: list[str] = []
        self.fills: dict[str, Fill] = {}
        self._serial = 0
        self._nursery = nursery
        self._on_event = on_event
        self._save_lock = trio.Lock()
        self._spare: int | None = None  # the size of the spare file, when there is one

    # -- size ------------------------------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes of complete entries, the reservations of the fills in flight and the spare
        file."""
        return (sum(e.size for e in self.entries.values())
                + sum(f.size for f in self.fills.values()) + (self._spare or 0))

    def _make_room(self, size: int) -> bool:
        """Evict least-recently-used entries until ``size`` more bytes fit, the spare file
        counting as room (the fill that asks overwrites it; the first entry evicted becomes
        it when there is none); False (nothing evicted) when they cannot fit even with every
        entry gone."""
        if size > self.max_size - sum(f.size for f in self.fills.values()):
            return False
        by_age = sorted(self.entries.values(), key=lambda e: e.last_accessed)
        while self.used - (self._spare or 0) + size > self.max_size:
            victim = by_age.pop(0)
            self._remove(victim.image_id, spare=True)
            self._on_event("evict", victim.image_id, victim.size)
            log.info("CACHE image=%s evicted (%d bytes, last used %.0f) to make room",
                     victim.image_id, victim.size, victim.last_accessed)
        return True

    def _remove(self, image_id: str, *, spare: bool = False) -> CacheEntry | None:
        """Forget the entry of ``image_id`` and its file: with ``spare``, the file becomes
        the spare when there is none (its bytes stay counted in ``used``)."""
        entry = self.entries.pop(image_id, None)
        if entry is not None:
            # an open descriptor (a download being sent) keeps the bytes until it closes;
            # a fill reusing the file as its spare first checks that none is open
            with contextlib.suppress(FileNotFoundError):
                if spare and self._spare is None:
                    os.rename(self.root / image_id, self.root / SPARE)
                    self._spare = entry.size
                else:
                    os.unlink(self.root / image_id)
        return entry

    def _discard_spare(self) -> None:
        if self._spare is not None:
            self._spare = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / SPARE)

    def _open_fill_file(self, path: Path) -> int:
        """``path`` created for a fill: the spare file renamed to it when there is one that
        no other descriptor holds open (its size is this fill's reservation now), else a
        new file."""
        spare, self._spare = self._spare, None
        if spare is not None:
            try:
                os.rename(self.root / SPARE, path)
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                for name in (self.root / SPARE, path):  # whichever name it still has
                    with contextlib.suppress(OSError):
                        os.unlink(name)
            else:
                if posix.only_descriptor(fd):
                    return fd
                log.info("CACHE the spare file is still open (a download of the entry it "
                         "was): a new file instead")
                os.close(fd)
                os.unlink(path)
        return posix.open_new(path)

    # -- entries ---------------------------------------------------------------------------

    def open_entry(self, image_id: str) -> OpenFile | None:
        """The complete entry of ``image_id`` opened for reading (a hit: its count and
        access time move), or None."""
        entry = self.entries.get(image_id)
        if entry is None:
            return None
        try:
            fd = os.open(self.root / image_id, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            log.warning("CACHE image=%s entry file is gone; dropped", image_id)
            self.entries.pop(image_id, None)
            return None
        entry.hits += 1
        entry.last_accessed = self.clock()
        return OpenFile(fd, entry.size)

    async def read_file(self, opened: OpenFile, offset: int, length: int
                        ) -> AsyncIterator[memoryview]:
        """Yield ``[offset, offset + length)`` of an opened entry (for callers that cannot
        ``sendfile``); the caller closes ``opened``."""
        buf = memoryview(bytearray(min(length, self.read_chunk) or 1))
        position, end = offset, offset + length
        while position < end:
            got = await self.calls.pread(opened.fileno(), buf[: min(end - position, len(buf))],
                                         position)
            if got == 0:
                raise StoreError("a cache entry is shorter than recorded")
            yield buf[:got]
            position += got

    async def drop(self, image_id: str) -> bool:
        """Forget ``image_id``: its entry, its fill (cancelled) and its place in the queue.
        Returns whether there was anything."""
        found = self._remove(image_id, spare=True) is not None
        if image_id in self.queued:
            self.queued.remove(image_id)
            found = True
        fill = self.fills.get(image_id)
        if fill is not None:
            fill.cancel()
            found = True
        if found:
            await self.save()
        return found

    async def clear(self, *, entries: bool, queue: bool) -> int:
        """Drop every entry (and fill), and/or empty the queue; return how many entries."""
        count = 0
        if entries:
            for image_id in list(self.entries):
                self._remove(image_id)
                count += 1
            for fill in list(self.fills.values()):
                fill.cancel()
            self._discard_spare()
        if queue:
            self.queued.clear()
        await self.save()
        return count

    def queue(self, image_id: str) -> None:
        """Remember ``image_id`` for the prefetcher (Glance's queued images)."""
        if image_id not in self.queued and image_id not in self.entries:
            self.queued.append(image_id)

    # -- fills -----------------------------------------------------------------------------

    def start_fill(self, image_id: str, size: int, xxh3: str, source: RangeSource, *,
                   pinned: bool) -> Fill | None:
        """The fill of ``image_id``: the one in flight (pinned too if ``pinned``), or a new
        one reading ``source(offset, length)`` (``fill_streams`` ranges at once, see
        ``streamd.io.striped``); None when the image cannot fit under ``max_size``."""
        fill = self.fills.get(image_id)
        if fill is not None:
            fill.pinned = fill.pinned or pinned
            return fill
        if not self._make_room(size):
            self._on_event("uncached", image_id, size)
            log.info("CACHE image=%s not cached: %d bytes do not fit in cache_max_size %d "
                     "(%d bytes being filled)", image_id, size, self.max_size,
                     sum(f.size for f in self.fills.values()))
            return None
        fill = Fill(self, image_id, size, xxh3, pinned=pinned, now=self.clock())
        try:
            # created here, in the event loop (a local create does not block), so that a
            # reader attached before the fill task runs finds the file
            fd = self._open_fill_file(fill.path)
        except OSError as exc:
            log.warning("CACHE image=%s not cached: the cache cannot create its file (%s)",
                        image_id, exc)
            return None
        self.fills[image_id] = fill
        self._on_event("start", image_id, size)
        self._nursery.start_soon(self._run_fill, fill, source, fd)
        return fill

    async def _run_fill(self, fill: Fill, source: RangeSource, fd: int) -> None:
        result = "cancelled"
        try:
            with fill.scope:
                hasher = xxhash.xxh3_128()

                def progressed() -> None:
                    fill.last_progress = self.clock()

                got = await copy_striped(source, fd, fill.path, fill.size,
                                   streams=self.fill_streams, piece=self.fill_piece,
                                   calls=self.calls, hasher=hasher, advanced=fill._advanced,
                                   progressed=progressed)
                digest = hasher.hexdigest()
                if got != fill.size or fill.written != fill.size or digest != fill.xxh3:
                    result = "mismatch"
                    log.error("CACHE image=%s fill discarded: the store gave %d bytes, the "
                              "first %d with xxh3 %s; the registry records %d bytes with "
                              "xxh3 %s", fill.image_id, got, fill.written, digest, fill.size,
                              fill.xxh3)
                else:
                    await self.calls.io("write", posix.truncate_and_sync, fd, fill.size)
                    os.close(fd)
                    fd = -1
                    # a cancel (cache cleared, image deleted) that came while the last
                    # write or the sync ran in its thread is seen here, before the rename:
                    # nothing awaits between this checkpoint and the shield
                    await trio.lowlevel.checkpoint()
                    with trio.CancelScope(shield=True):  # once renamed, it is recorded
                        await self.calls.io("write", posix.publish, fill.path,
                                            self.root / fill.image_id)
                        if fill.scope.cancel_called:
                            # cancelled (cache cleared, image dropped) while the rename
                            # and its directory sync ran in their thread: undo it here,
                            # in the loop, before a new fill of the image can publish (if
                            # one did meanwhile, its entry now names these same bytes)
                            if fill.image_id not in self.entries:
                                with contextlib.suppress(FileNotFoundError):
                                    os.unlink(self.root / fill.image_id)
                            return
                        self._serial += 1
                        now = self.clock()
                        self.entries[fill.image_id] = CacheEntry(
                            fill.image_id, fill.size, fill.xxh3, self._serial, now, now)
                        fill.state = "complete"
                        result = "complete"
                        if fill.image_id in self.queued:
                            self.queued.remove(fill.image_id)
                        if self.fills.get(fill.image_id) is fill:
                            del self.fills[fill.image_id]
                        fill._notify()
                        await self.save()
        except Exception as exc:
            result = "failed"
            log.warning("CACHE image=%s fill failed after %d of %d bytes: %s", fill.image_id,
                        fill.written, fill.size, exc)
        finally:
            if fd >= 0:
                os.close(fd)
            if fill.state != "complete":
                fill.state = "failed"
                if self.fills.get(fill.image_id) is fill:
                    del self.fills[fill.image_id]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(fill.path)
                fill._notify()
            fill.done.set()
            self._on_event(result, fill.image_id, fill.written)
        if result == "complete":
            log.info("CACHE image=%s cached (%d bytes, xxh3 verified)", fill.image_id,
                     fill.size)

    # -- upkeep ----------------------------------------------------------------------------

    def prune(self) -> tuple[int, int]:
        """Evict least-recently-used entries until the cache is within ``max_size`` (a
        smaller ``max_size`` than at the last start); return (files, bytes) removed."""
        files = size = 0
        if self.used > self.max_size:
            self._discard_spare()
        for entry in sorted(self.entries.values(), key=lambda e: e.last_accessed):
            if self.used <= self.max_size:
                break
            self._remove(entry.image_id)
            self._on_event("evict", entry.image_id, entry.size)
            files, size = files + 1, size + entry.size
        return files, size

    async def clean(self, stall_time: float) -> int:
        """Cancel fills that made no progress for ``stall_time`` seconds and remove files
        that are no entry and no fill in flight (left by another run); return how many."""
        now = self.clock()
        removed = 0
        for fill in list(self.fills.values()):
            if fill.state == "running" and now - fill.last_progress > stall_time:
                log.warning("CACHE image=%s fill stalled for %.0f s: cancelled",
                            fill.image_id, now - fill.last_progress)
                fill.cancel()
                removed += 1
        active = {fill.path.name for fill in self.fills.values()}
        keep = {*self.entries, *active, INDEX, LOCK, *([SPARE] if self._spare is not None else [])}
        removed += await self.calls.run(_remove_strays, self.root, keep)
        return removed

    async def save(self) -> None:
        """Write the index (entries, counts, queue) atomically."""
        async with self._save_lock:
            doc = json.dumps({"serial": self._serial,
                              "entries": [dataclasses.asdict(e) for e in self.entries.values()],
                              "queued": list(self.queued)}).encode()
            with trio.CancelScope(shield=True):
                await self.calls.io("write", posix.write_atomically, self.root / INDEX, doc)

    def _load(self) -> None:
        """Read the index and reconcile it with the files (blocking: at start-up)."""
        try:
            doc = json.loads((self.root / INDEX).read_bytes())
        except FileNotFoundError:
            doc = {}
        except ValueError:
            log.warning("cache index %s is unreadable; starting empty", self.root / INDEX)
            doc = {}
        self._serial = int(doc.get("serial", 0))
        for raw in doc.get("entries", []):
            entry = CacheEntry(**raw)
            try:
                size = (self.root / entry.image_id).stat().st_size
            except FileNotFoundError:
                continue
            if size == entry.size:
                self.entries[entry.image_id] = entry
        self.queued = [i for i in doc.get("queued", []) if isinstance(i, str)]
        removed = _remove_strays(self.root, {*self.entries, INDEX, LOCK})
        if removed:
            log.warning("cache %s: removed %d file(s) that were no verified entry (fills cut "
                        "off by a crash)", self.root, removed)


def _remove_strays(root: Path, keep: set[str]) -> int:
    removed = 0
    for entry in os.scandir(root):
        if entry.name in keep or not entry.is_file(follow_symlinks=False):
            continue
        if posix.is_temp_name(entry.name) and entry.name.startswith(f".{INDEX}."):
            continue  # an index being written
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed += 1
    return removed


def _lock(root: Path) -> int:
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise CacheBusy(f"cache_dir {root} is used by another process") from None
        raise
    return fd


@contextlib.asynccontextmanager
async def open_image_cache(
    root: Path, max_size: int, *, limiter: trio.CapacityLimiter | None = None,
    clock: Callable[[], float] = time.time, on_event: EventHook = lambda *_: None,
    read_chunk: int = READ_CHUNK, fill_streams: int = FILL_STREAMS,
    fill_piece: int = FILL_PIECE,
) -> AsyncIterator[ImageCache | None]:
    """The cache in ``root`` for as long as the block: its index loaded, what a crash left
    removed, its fills in a nursery of its own. On exit the fills are cancelled (their temp
    files removed) and the index saved. None (and a warning) when another process holds
    ``root``."""

    def prepare() -> tuple[int, Path]:
        root.mkdir(parents=True, exist_ok=True)
        return _lock(root), root.resolve()

    try:
        lock_fd, where = await trio.to_thread.run_sync(prepare)
    except CacheBusy as exc:
        log.warning("%s: this process serves without a cache", exc)
        yield None
        return
    try:
        async with trio.open_nursery() as nursery:
            cache = ImageCache(where, max_size, nursery=nursery, limiter=limiter,
                               clock=clock, on_event=on_event, read_chunk=read_chunk,
                               fill_streams=fill_streams, fill_piece=fill_piece)
            await trio.to_thread.run_sync(cache._load)
            try:
                yield cache
            finally:
                nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await cache.save()
    finally:
        os.close(lock_fd)

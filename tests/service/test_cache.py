"""The read-through cache in a runtime, on the memory store behind a counting wrapper (a
real store, its reads counted): single flight, ranges from complete and partial entries,
the hard limit under a burst of fills, an xxh3 mismatch discarded, deletion, and the
cleaner and prefetcher on trio's MockClock (no sleeps)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType

import pytest
import trio
import trio.testing

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.io import BytesSource, MemoryStore, OpenFile, ThrottledStore
from streamd.io import cache as io_cache
from streamd.io.cache import INDEX
from streamd.io.stores import CountingStore
from streamd.registry import ImageRecord
from streamd.service import cache, downloads, images, periodic, transfers
from streamd.service.runtime import Runtime, open_runtime
from streamd.store_config import StoreSpec
from streamd.units import KiB, MiB

ADMIN = RequestContext(project_id="admin", user_id="admin", roles=frozenset({"admin"}))
SIZE = 1000 * KiB + 17


def settings(tmp_path: Path, **kw: object) -> Settings:
    # a file store with cached = true turns the cache on; the tests add a memory store
    file_store = StoreSpec("file", "file", options=MappingProxyType({"path": None,
                                                                      "cached": True}))
    return Settings(data_dir=tmp_path / "data", stores=(file_store,), **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def runtime(tmp_path: Path, store: object, **kw: object) -> AsyncIterator[Runtime]:
    """A runtime whose store "mem" is ``store`` (cached)."""
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings(tmp_path, **kw), nursery,
                                cache_clock=trio.current_time) as rt:
            assert rt.cache is not None
            rt.stores.stores["mem"] = store  # type: ignore[assignment]
            rt.cache.cached_stores.add("mem")
            yield rt
        nursery.cancel_scope.cancel()


async def new_image(rt: Runtime, data: bytes) -> ImageRecord:
    image = await rt.db(rt.registry.create, {"name": "c", "owner": "admin",
                                             "disk_format": "raw", "container_format": "bare"})
    return await transfers.upload(rt, ADMIN, image.id, BytesSource(data), size=len(data),
                                  store_id="mem")


async def read(rt: Runtime, record: ImageRecord, offset: int = 0, length: int | None = None,
               *, zero_copy: bool = False) -> bytes:
    assert record.size is not None
    length = record.size - offset if length is None else length
    async with downloads.open_download(rt, record, offset, length,
                                       zero_copy=zero_copy) as download:
        if download.file is not None:
            return _pread(download.file, offset, length)
        assert download.chunks is not None
        return b"".join([bytes(c) async for c in download.chunks])


def _pread(file: OpenFile, offset: int, length: int) -> bytes:
    import os

    return os.pread(file.fileno(), length, offset)


async def settled(rt: Runtime) -> None:
    """Wait until every fill in flight has ended."""
    assert rt.cache is not None
    while rt.cache.cache.fills:
        await next(iter(rt.cache.cache.fills.values())).done.wait()


async def cached_image(rt: Runtime, data: bytes) -> ImageRecord:
    """A new image of ``data``, read once and its fill ended: a complete cache entry."""
    record = await new_image(rt, data)
    await read(rt, record)
    await settled(rt)
    return record


def gated(inner: MemoryStore) -> tuple[ThrottledStore, Callable[[int], None]]:
    """A store that lets chunks (written or read) through only as ``allow(n)`` says: ``n``
    more from now on (0: hold every one from now on; a fill held mid-way)."""
    allowed = [0]
    passed = [0]
    changed = [trio.Event()]

    async def pause(_: float) -> None:
        while passed[0] >= allowed[0]:
            await changed[0].wait()
        passed[0] += 1

    def allow(n: int) -> None:
        allowed[0] = passed[0] + n
        changed[0].set()
        changed[0] = trio.Event()

    return ThrottledStore(inner, delay=0.0, sleep=pause), allow


async def test_eight_readers_one_store_read(tmp_path: Path) -> None:
    store = CountingStore(MemoryStore("mem"))
    data = random.Random(1).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        record = await new_image(rt, data)
        got: list[bytes] = []

        async def reader() -> None:
            got.append(await read(rt, record))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader)
        assert got == [data] * 8
        await settled(rt)
        assert (store.reads, store.bytes_read) == (1, SIZE)  # the store saw each byte once
        assert rt.cache is not None and record.id in rt.cache.cache.entries
        # a hit: a complete entry goes out as a file (sendfile), no store read
        assert await read(rt, record, zero_copy=True) == data
        assert await read(rt, record, 5, 100) == data[5:105]
        assert store.reads == 1
        listing = cache.listing(rt, ADMIN)
        assert [(e["image_id"], e["size"], e["hits"]) for e in listing["cached_images"]] == [
            (record.id, SIZE, 2)]


async def test_a_striped_fill_reads_each_byte_once(tmp_path: Path) -> None:
    # 3 ranged reads of 1 MiB pieces at once (streamd.io.striped) behind 8 readers and a range
    store = CountingStore(MemoryStore("mem"))
    data = random.Random(12).randbytes(4 * MiB + 17)
    async with runtime(tmp_path, store, cache_fill_streams=3, cache_fill_piece=1 * MiB) as rt:
        record = await new_image(rt, data)
        got: list[bytes] = []

        async def reader(offset: int, length: int) -> None:
            got.append(await read(rt, record, offset, length))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader, 0, len(data))
            nursery.start_soon(reader, 3 * MiB - 5, 1 * MiB + 10)
        assert sorted(got, key=len) == [data[3 * MiB - 5:4 * MiB + 5]] + [data] * 8
        await settled(rt)
        assert (store.reads, store.bytes_read) == (5, len(data))  # 5 pieces, each byte once
        assert rt.cache is not None and record.id in rt.cache.cache.entries
        assert await read(rt, record, zero_copy=True) == data


async def test_ranges_from_a_partial_and_a_complete_entry(tmp_path: Path) -> None:
    inner = MemoryStore("mem")
    store, allow = gated(inner)
    data = random.Random(2).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        allow(10**6)
        record = await new_image(rt, data)
        allow(0)  # reads are held from here on
        assert rt.cache is not None
        async with trio.open_nursery() as nursery:
            result: dict[str, bytes] = {}

            async def whole() -> None:
                result["whole"] = await read(rt, record)

            store_chunks = 64 * KiB  # the memory store's chunk
            nursery.start_soon(whole)
            allow(4)  # the fill gets 4 chunks
            fill = None
            while fill is None or fill.written < 4 * store_chunks:
                await trio.testing.wait_all_tasks_blocked()
                fill = rt.cache.cache.fills.get(record.id)
            # a range inside what the partial entry holds: served at once, from the file
            assert await read(rt, record, 1000, 100_000) == data[1000:101_000]
            assert rt.cache.cache.fills[record.id].written == 4 * store_chunks
            allow(10**6)
        assert result["whole"] == data
        await settled(rt)
        for offset, length in ((0, 1), (SIZE - 1, 1), (12345, 300_000)):
            assert await read(rt, record, offset, length) == data[offset:offset + length]
            assert await read(rt, record, offset, length, zero_copy=True) == \
                data[offset:offset + length]


async def test_readers_that_keep_up_share_the_fills_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers at the fill's front get the very ``bytes`` the fill wrote (no re-read, no
    copy per reader); one that starts further back than the fill keeps in memory reads the
    file, and then catches up."""
    monkeypatch.setattr(io_cache, "RECENT_BYTES", 4 * 64 * KiB)  # 4 memory-store chunks
    store, allow = gated(MemoryStore("mem"))
    data = random.Random(8).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        allow(10**6)
        record = await new_image(rt, data)
        allow(0)
        assert rt.cache is not None and record.size is not None
        # a view is valid until the next chunk: kept as (was it the fill's bytes, a copy)
        got: dict[str, list[tuple[bytes | None, bytes]]] = {"a": [], "b": [], "late": []}

        async def reader(name: str) -> None:
            async with downloads.open_download(rt, record, 0, SIZE, zero_copy=False) as d:
                assert d.chunks is not None
                async for chunk in d.chunks:
                    got[name].append((chunk if isinstance(chunk, bytes) else None,
                                      bytes(chunk)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, "a")
            nursery.start_soon(reader, "b")
            allow(8)
            fill = None
            while fill is None or fill.written < 8 * 64 * KiB:
                await trio.testing.wait_all_tasks_blocked()
                fill = rt.cache.cache.fills.get(record.id)
            nursery.start_soon(reader, "late")
            await trio.testing.wait_all_tasks_blocked()
            allow(10**6)
        assert [b"".join(c for _, c in chunks) for chunks in got.values()] == [data] * 3
        assert len(got["a"]) == len(got["b"]) and all(
            x is not None and x is y for (x, _), (y, _) in zip(got["a"], got["b"], strict=True))
        assert got["late"][0][0] is None  # from the file: 8 chunks behind the fill
        assert got["late"][-1][0] is not None  # caught up: from memory again
        await settled(rt)


async def test_a_fill_nobody_wants_is_cancelled_and_removed(tmp_path: Path) -> None:
    store, allow = gated(MemoryStore("mem"))
    data = random.Random(3).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        allow(10**6)
        record = await new_image(rt, data)
        allow(0)
        assert rt.cache is not None
        root = rt.cache.cache.root
        got: dict[str, bytes] = {}
        first_in = trio.Event()

        async def first_client(scope_out: list[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                scope_out.append(scope)
                async with downloads.open_download(rt, record, 0, SIZE, zero_copy=False) as d:
                    assert d.chunks is not None
                    await anext(d.chunks)
                    first_in.set()
                    await trio.sleep_forever()  # a slow client, then it goes away

        async def second_client() -> None:
            async with downloads.open_download(rt, record, 0, SIZE, zero_copy=False) as d:
                assert d.chunks is not None
                got["second"] = b"".join([bytes(c) async for c in d.chunks])

        async with trio.open_nursery() as nursery:
            scopes: list[trio.CancelScope] = []
            nursery.start_soon(first_client, scopes)
            allow(2)
            await first_in.wait()
            nursery.start_soon(second_client)
            await trio.testing.wait_all_tasks_blocked()
            scopes[0].cancel()  # the first client goes: the second still wants the fill
            await trio.testing.wait_all_tasks_blocked()
            assert record.id in rt.cache.cache.fills
            allow(10**6)
        assert got["second"] == data
        await settled(rt)
        assert record.id in rt.cache.cache.entries
        await rt.cache.cache.drop(record.id)
        # now a lone reader that goes away mid-fill: the fill is cancelled, nothing left
        allow_more = 2
        store2, allow2 = gated(MemoryStore("mem"))
        store2.inner.objects.update(store.inner.objects)  # type: ignore[attr-defined]
        rt.stores.stores["mem"] = store2
        async with downloads.open_download(rt, record, 0, SIZE, zero_copy=False) as d:
            assert d.chunks is not None
            allow2(allow_more)
            await anext(d.chunks)
            lone = rt.cache.cache.fills[record.id]
        assert record.id not in rt.cache.cache.fills  # cancelled: a new download starts anew
        await lone.done.wait()
        assert lone.state == "failed"
        assert record.id not in rt.cache.cache.entries
        assert {p.name for p in root.iterdir()} <= {".lock", INDEX}


async def test_hard_limit_under_a_burst_of_fills(tmp_path: Path) -> None:
    store = CountingStore(MemoryStore("mem"))
    size = 300 * KiB
    async with runtime(tmp_path, store, cache_max_size=int(2.5 * size)) as rt:
        assert rt.cache is not None
        datas = [random.Random(10 + n).randbytes(size) for n in range(6)]
        records = [await new_image(rt, d) for d in datas]
        peak = [0]

        async def reader(record: ImageRecord, data: bytes) -> None:
            assert await read(rt, record) == data
            peak[0] = max(peak[0], rt.cache.cache.used)  # type: ignore[union-attr]

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], rt.cache.cache.used)  # type: ignore[union-attr]
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as burst:
                for record, data in zip(records, datas, strict=True):
                    burst.start_soon(reader, record, data)
            nursery.cancel_scope.cancel()
        await settled(rt)
        assert peak[0] <= 2.5 * size
        assert len(rt.cache.cache.entries) == 2  # the rest went straight from the store
        on_disk = sum(p.stat().st_size for p in rt.cache.cache.root.iterdir()
                      if p.name not in (INDEX, ".lock"))
        assert on_disk <= 2.5 * size
        # later fills evict the least recently used entries, never pass the limit
        for record, data in zip(records[2:], datas[2:], strict=True):
            assert await read(rt, record) == data
            await settled(rt)
            assert rt.cache.cache.used <= 2.5 * size
            assert record.id in rt.cache.cache.entries


async def test_xxh3_mismatch_is_discarded(tmp_path: Path) -> None:
    store = CountingStore(MemoryStore("mem"))
    data = random.Random(4).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        record = await new_image(rt, data)
        assert rt.cache is not None
        inner = store.inner
        assert isinstance(inner, MemoryStore)
        key = next(iter(inner.objects))
        inner.objects[key] = b"x" + data[1:]  # same size, other bytes
        assert await read(rt, record) == b"x" + data[1:]  # what the store has
        await settled(rt)
        assert record.id not in rt.cache.cache.entries
        assert {p.name for p in rt.cache.cache.root.iterdir()} <= {".lock", INDEX}


async def test_deleting_an_image_drops_its_entry(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(SIZE)
    async with runtime(tmp_path, CountingStore(MemoryStore("mem"))) as rt:
        record = await new_image(rt, data)
        await read(rt, record)
        await settled(rt)
        assert rt.cache is not None and record.id in rt.cache.cache.entries
        await images.delete_image(rt, ADMIN, record.id)
        assert record.id not in rt.cache.cache.entries
        assert not (rt.cache.cache.root / record.id).exists()


async def test_an_entry_the_registry_no_longer_backs_is_dropped(tmp_path: Path) -> None:
    """Another node deleted the image (or it holds other data): the cleaner drops the entry,
    and a download drops it at its next use."""
    data = random.Random(7).randbytes(SIZE)
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        gone, changed = await new_image(rt, data), await new_image(rt, data[::-1])
        for record in (gone, changed):
            await read(rt, record)
        await settled(rt)
        assert {gone.id, changed.id} <= set(rt.cache.cache.entries)
        await rt.db(rt.registry.delete, gone.id)  # as another node does
        assert await cache.clean(rt) == 1
        assert gone.id not in rt.cache.cache.entries and changed.id in rt.cache.cache.entries
        reads = store.reads
        other = dataclasses.replace(changed, xxh3="0" * 32)  # the registry says otherwise
        assert await read(rt, other) == data[::-1]  # the store's bytes, not the entry's
        await settled(rt)
        assert store.reads == reads + 1
        assert changed.id not in rt.cache.cache.entries  # dropped, and the refill mismatched


async def eventually(check: Callable[[], bool | Awaitable[bool]]) -> None:
    """Let the upkeep (woken by a jump of the mock clock) run: its work is in threads."""
    for _ in range(1000):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await trio.to_thread.run_sync(time.sleep, 0.01)
    raise AssertionError("never happened")


async def test_prefetcher_and_cleaner_on_a_mock_clock(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    store, allow = gated(MemoryStore("mem"))
    data = random.Random(6).randbytes(SIZE)
    async with runtime(tmp_path, store, cache_prefetch_interval=300.0,
                       cache_clean_interval=600.0, cache_stall_time=3600.0) as rt, \
            periodic.periodic_jobs(rt):
        assert rt.cache is not None
        allow(10**6)
        queued = await new_image(rt, data)
        stalled = await new_image(rt, data[::-1])
        c = rt.cache.cache
        c.queue(queued.id)  # queued without waking the prefetcher: its next pass fills it
        await trio.testing.wait_all_tasks_blocked()
        assert queued.id not in c.entries
        mock_clock.jump(300)
        await eventually(lambda: queued.id in c.entries)
        assert c.queued == []

        # a fill that makes no progress (the store hangs) is cancelled by the cleaner once
        # it has stalled for cache_stall_time, and its partial file removed
        store2, allow2 = gated(MemoryStore("mem"))
        store2.inner.objects.update(store.inner.objects)  # type: ignore[attr-defined]
        rt.stores.stores["mem"] = store2
        c.queue(stalled.id)
        rt.cache.wake_prefetcher()  # as PUT /v2/cache/{id} does: at once
        allow2(1)
        await eventually(lambda: stalled.id in c.fills and c.fills[stalled.id].written > 0)
        temp = c.fills[stalled.id].path
        assert temp.exists()
        mock_clock.jump(600)  # a cleaner pass: stalled for 600 s only, kept
        await trio.testing.wait_all_tasks_blocked()
        assert stalled.id in c.fills
        mock_clock.jump(3000)  # stalled for more than cache_stall_time: cancelled at the
        for _ in range(100):  # next pass (one may be busy in a thread: jump on until then)
            if stalled.id not in c.fills:
                break
            mock_clock.jump(600)
            await trio.to_thread.run_sync(time.sleep, 0.01)
        assert stalled.id not in c.fills
        await eventually(lambda: not temp.exists())
        assert stalled.id not in c.entries and queued.id in c.entries


@pytest.mark.parametrize("held", ["truncate_and_sync", "publish"])
async def test_a_fill_cleared_while_it_commits_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    """``DELETE /v2/cache`` while a fill has every byte and is syncing its file, or renaming
    it and syncing the directory (in a thread): the fill is not published, or its rename is
    undone; the cache stays empty (glanceclient's cache test saw the entry come back after
    ``cache.clear("both")``, first in the sync, then in the rename)."""
    import threading

    from streamd.io import posix

    armed, inside, release = threading.Event(), threading.Event(), threading.Event()
    real = getattr(posix, held)

    def held_call(*args: object) -> None:
        if armed.is_set():  # the fill's call, not the upload's or the index's
            armed.clear()
            inside.set()
            release.wait(10)
        real(*args)

    monkeypatch.setattr(posix, held, held_call)
    data = random.Random(9).randbytes(SIZE)
    async with runtime(tmp_path, MemoryStore("mem")) as rt, periodic.periodic_jobs(rt):
        assert rt.cache is not None
        record = await new_image(rt, data)
        c = rt.cache.cache
        armed.set()
        c.queue(record.id)
        rt.cache.wake_prefetcher()  # as PUT /v2/cache/{id}
        assert await trio.to_thread.run_sync(inside.wait, 10)
        fill = c.fills[record.id]
        assert fill.written == SIZE  # every byte in: only the commit is left
        await c.clear(entries=True, queue=True)
        release.set()
        await fill.done.wait()
        assert c.entries == {} and c.queued == [] and c.fills == {}
        assert sorted(p.name for p in c.root.iterdir() if p.name != INDEX
                      and not p.name.startswith(".")) == []
        monkeypatch.setattr(posix, held, real)
        assert await read(rt, record) == data  # from the store, and cached anew
        await settled(rt)
        assert list(c.entries) == [record.id]
        assert (c.root / record.id).read_bytes() == data


async def test_an_image_dequeued_while_the_prefetcher_looks_it_up_is_not_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DELETE /v2/cache`` (queue, then both) while the prefetcher is reading the queued
    image's record (in a thread): no fill starts once the lookup returns (glanceclient's
    cache test saw an entry appear after ``cache.clear("both")``)."""
    import threading

    looking, release, returned = threading.Event(), threading.Event(), threading.Event()
    data = random.Random(10).randbytes(SIZE)
    async with runtime(tmp_path, MemoryStore("mem")) as rt, periodic.periodic_jobs(rt):
        assert rt.cache is not None
        record = await new_image(rt, data)
        real_get = rt.registry.get

        def held_get(image_id: str, *args: object, **kw: object) -> ImageRecord:
            if image_id == record.id and not looking.is_set():
                looking.set()
                release.wait(10)
                try:
                    return real_get(image_id, *args, **kw)  # type: ignore[arg-type]
                finally:
                    returned.set()
            return real_get(image_id, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(rt.registry, "get", held_get)
        c = rt.cache.cache
        c.queue(record.id)
        rt.cache.wake_prefetcher()  # as PUT /v2/cache/{id}
        assert await trio.to_thread.run_sync(looking.wait, 10)
        await c.clear(entries=False, queue=True)
        await c.clear(entries=True, queue=True)
        release.set()
        await eventually(returned.is_set)
        for _ in range(20):  # the pass goes on in the event loop (and a fill, in threads)
            await trio.testing.wait_all_tasks_blocked()
            await trio.to_thread.run_sync(time.sleep, 0.005)
        assert c.entries == {} and c.queued == [] and c.fills == {}


def _inode(path: Path) -> int:
    return path.stat().st_ino


async def test_a_dropped_entry_is_the_next_fills_file(tmp_path: Path) -> None:
    """An entry dropped (its image deleted) stays as the spare file, counted in ``used``;
    the next fill overwrites it in place, smaller or larger than it, and its entry holds
    exactly its own bytes."""
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        ic = rt.cache.cache
        first, smaller, larger = (random.Random(20 + n).randbytes(size)
                                  for n, size in enumerate((SIZE, SIZE // 3, 2 * SIZE)))
        previous = await cached_image(rt, first)
        for data in (smaller, larger):
            inode = _inode(ic.root / previous.id)
            await images.delete_image(rt, ADMIN, previous.id)
            spare = ic.root / io_cache.SPARE
            assert _inode(spare) == inode and ic.used == len(first if data is smaller
                                                                  else smaller)
            record = await new_image(rt, data)
            assert await read(rt, record) == data
            await settled(rt)
            assert not spare.exists()
            assert _inode(ic.root / record.id) == inode  # the same file, rewritten
            assert (ic.root / record.id).read_bytes() == data  # no tail of the old bytes
            assert ic.used == len(data)
            previous = record


async def test_a_spare_still_open_is_not_overwritten(tmp_path: Path) -> None:
    """A download still sending the entry that became the spare keeps its bytes: the next
    fill finds the file open (a write lease refused) and writes a new file."""
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        ic = rt.cache.cache
        old, new = random.Random(30).randbytes(SIZE), random.Random(31).randbytes(SIZE)
        record = await cached_image(rt, old)
        sending = ic.open_entry(record.id)  # a hit being sent
        assert sending is not None
        try:
            inode = _inode(ic.root / record.id)
            await images.delete_image(rt, ADMIN, record.id)
            assert (ic.root / io_cache.SPARE).exists()
            other = await new_image(rt, new)
            assert await read(rt, other) == new
            await settled(rt)
            assert _inode(ic.root / other.id) != inode
            assert _pread(sending, 0, SIZE) == old
        finally:
            sending.close()
        assert {p.name for p in ic.root.iterdir()} == {".lock", INDEX, other.id}
        assert ic.used == SIZE


async def test_a_full_cache_rewrites_the_entry_it_evicts(tmp_path: Path) -> None:
    """At the limit, a fill evicts the least recently used entry and writes into its file:
    the limit holds at every step and no spare is left behind."""
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store, cache_max_size=2 * SIZE) as rt:
        assert rt.cache is not None
        ic = rt.cache.cache
        datas = [random.Random(40 + n).randbytes(SIZE) for n in range(4)]
        records = [await new_image(rt, d) for d in datas]
        for record in records[:2]:
            await read(rt, record)
            await settled(rt)
        for n in (2, 3):
            oldest = records[n - 2]
            inode = _inode(ic.root / oldest.id)
            assert await read(rt, records[n]) == datas[n]
            assert ic.used <= 2 * SIZE
            await settled(rt)
            assert set(ic.entries) == {records[n - 1].id, records[n].id}
            assert _inode(ic.root / records[n].id) == inode
            assert (ic.root / records[n].id).read_bytes() == datas[n]
            assert {p.name for p in ic.root.iterdir()} == {
                ".lock", INDEX, records[n - 1].id, records[n].id}


async def test_clear_prune_and_restart_remove_the_spare(tmp_path: Path) -> None:
    store = CountingStore(MemoryStore("mem"))
    data = random.Random(50).randbytes(SIZE)
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        ic = rt.cache.cache
        spare = ic.root / io_cache.SPARE
        for how in ("clear", "prune"):
            record = await cached_image(rt, data)
            await ic.drop(record.id)
            assert spare.exists() and ic.used == SIZE
            if how == "clear":
                await cache.clear(rt, ADMIN, None)
            else:
                ic.max_size = SIZE - 1  # lowered: the spare alone is over it
                await cache.prune(rt, ADMIN)
                ic.max_size = 10 * SIZE
            assert not spare.exists() and ic.used == 0
        record = await cached_image(rt, data)
        await ic.drop(record.id)
        assert spare.exists()
        root = ic.root
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None and rt.cache.cache.used == 0
        assert not (root / io_cache.SPARE).exists()


async def test_a_reader_that_comes_while_the_fill_is_renamed_reads_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that arrives while a fill with every byte is being renamed to its entry's
    name (in a thread) reads the file under that name, not the store (the bench saw such a
    1 MiB range go to Swift)."""
    import threading

    from streamd.io import posix

    inside, release = threading.Event(), threading.Event()
    real = posix.publish

    def held(temp: Path, final: Path) -> None:
        if final.name != INDEX:
            real(temp, final)  # renamed: the reader finds no temp file
            inside.set()
            release.wait(10)  # the directory's sync, before the state changes
            return
        real(temp, final)

    monkeypatch.setattr(posix, "publish", held)
    data = random.Random(60).randbytes(SIZE)
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        record = await new_image(rt, data)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, rt, record)
            assert await trio.to_thread.run_sync(inside.wait, 10)
            fill = rt.cache.cache.fills[record.id]
            assert fill.state == "running" and fill.written == SIZE
            reads = store.reads
            assert await read(rt, record, 5000, 1000) == data[5000:6000]
            assert store.reads == reads  # from the entry's file, not the store
            release.set()
        await settled(rt)
        assert list(rt.cache.cache.entries) == [record.id]


async def test_a_spare_gone_from_disk_is_replaced_by_a_new_file(tmp_path: Path) -> None:
    """Someone removed the spare file (an operator cleaning ``cache_dir`` by hand): the next
    fill writes a new file, and the cache counts only what it holds."""
    store = CountingStore(MemoryStore("mem"))
    async with runtime(tmp_path, store) as rt:
        assert rt.cache is not None
        ic = rt.cache.cache
        first, second = random.Random(70).randbytes(SIZE), random.Random(71).randbytes(SIZE)
        record = await cached_image(rt, first)
        await ic.drop(record.id)
        (ic.root / io_cache.SPARE).unlink()
        other = await new_image(rt, second)
        assert await read(rt, other) == second
        await settled(rt)
        assert (ic.root / other.id).read_bytes() == second
        assert {p.name for p in ic.root.iterdir()} == {".lock", INDEX, other.id}
        assert ic.used == SIZE

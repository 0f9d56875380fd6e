"""store_stream: digests, size checks, failure and cancellation clean-up, bounded memory."""

from __future__ import annotations

import functools
import hashlib
import os
import random
from pathlib import Path

import pytest
import trio
import xxhash

from streamd.errors import BadRequest, StreamdError
from streamd.io import (
    BufferBudget,
    BufferPool,
    ByteSource,
    BytesSource,
    FileSource,
    FileStore,
    MemoryStore,
    SizeCapExceeded,
    SizeMismatch,
    SourceAborted,
    StoredObject,
    StoreError,
    ThrottledStore,
    store_stream,
)
from streamd.units import KiB

C = 64 * KiB
ALGOS = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512", "xxh3_128", "xxh3_64"]


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def digest(algo: str, data: bytes) -> str:
    if algo.startswith("xxh3"):
        return getattr(xxhash, algo)(data).hexdigest()
    return hashlib.new(algo, data).hexdigest()


@pytest.mark.parametrize("one_hash_thread", [False, True], ids=["thread-each", "one-thread"])
@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 7 * C + 4321])
async def test_digests_match_hashlib_and_xxhash(size: int, one_hash_thread: bool) -> None:
    data = payload(size)
    store = MemoryStore()
    # short reads, as from a socket, exercise the fill loop
    src = BytesSource(data, max_read=10_000)
    result = await store_stream(src, store, key="img", chunk_size=C, queue_depth=3,
                                one_hash_thread=one_hash_thread)
    assert result.size == size
    assert result.checksum == hashlib.md5(data).hexdigest()
    assert result.os_hash_algo == "sha512"
    assert result.os_hash_value == hashlib.sha512(data).hexdigest()
    assert result.xxh3 == xxhash.xxh3_128(data).hexdigest()
    assert store.objects["img"] == data
    assert result.location == "memory://memory/img"


@pytest.mark.parametrize("one_hash_thread", [False, True], ids=["thread-each", "one-thread"])
@pytest.mark.parametrize("algo", ALGOS)
async def test_every_configurable_os_hash_algo(algo: str, one_hash_thread: bool) -> None:
    data = payload(3 * C + 17)
    result = await store_stream(
        BytesSource(data), MemoryStore(), key="img", os_hash_algo=algo, chunk_size=C,
        one_hash_thread=one_hash_thread,
    )
    assert (result.os_hash_algo, result.os_hash_value) == (algo, digest(algo, data))
    assert result.checksum == hashlib.md5(data).hexdigest()


async def test_unknown_algo_is_refused_before_reading() -> None:
    src = BytesSource(b"abc")
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        await store_stream(src, MemoryStore(), key="img", os_hash_algo="crc32")
    assert src.bytes_read == 0


async def test_file_store_and_file_source(tmp_path: Path) -> None:
    data = payload(5 * C + 3)
    (tmp_path / "in.raw").write_bytes(data)
    store = FileStore(tmp_path / "images")
    with open(tmp_path / "in.raw", "rb") as f:  # noqa: ASYNC230 - a test fixture file
        result = await store_stream(FileSource(f), store, key="img", chunk_size=C)
    assert result.location == f"file://{store.root / 'img'}"
    assert (store.root / "img").read_bytes() == data
    assert result.os_hash_value == hashlib.sha512(data).hexdigest()


async def test_size_cap() -> None:
    store = MemoryStore()
    exact = await store_stream(BytesSource(b"x" * 100), store, key="ok", size_cap=100)
    assert exact.size == 100
    src = BytesSource(b"x" * 10 * C)
    with pytest.raises(SizeCapExceeded) as info:
        await store_stream(src, store, key="big", size_cap=100, chunk_size=C)
    assert info.value.status == 413
    assert src.bytes_read == 101  # never reads more than one byte past the cap
    assert sorted(store.objects) == ["ok"]


async def test_announced_size_over_cap_is_refused_before_reading() -> None:
    src = BytesSource(b"x" * 200)
    with pytest.raises(SizeCapExceeded):
        await store_stream(src, MemoryStore(), key="img", size_cap=100, expected_size=200)
    assert src.bytes_read == 0


@pytest.mark.parametrize(
    ("sent", "announced"), [(1000, 1500), (1000, 999), (C, C + 1), (C + 1, C), (0, 1), (1, 0)]
)
async def test_body_shorter_or_longer_than_announced(sent: int, announced: int) -> None:
    store = MemoryStore()
    src = BytesSource(payload(sent))
    with pytest.raises(SizeMismatch) as info:
        await store_stream(src, store, key="img", expected_size=announced, chunk_size=C)
    assert info.value.status == 400
    assert src.bytes_read <= announced + 1
    assert store.objects == {}


async def test_body_of_announced_size() -> None:
    data = payload(2 * C)
    result = await store_stream(
        BytesSource(data), MemoryStore(), key="img", expected_size=2 * C, chunk_size=C
    )
    assert result.size == 2 * C


class FailingSource:
    """Serves ``good`` bytes, then raises ``exc``."""

    def __init__(self, good: int, exc: BaseException) -> None:
        self._inner = BytesSource(payload(good), max_read=C // 3)
        self._exc = exc

    async def readinto(self, buf: memoryview) -> int:
        n = await self._inner.readinto(buf)
        if n == 0:
            raise self._exc
        return n


def file_store_with_listing(tmp_path: Path) -> tuple[FileStore, Path]:
    store = FileStore(tmp_path / "images")
    return store, store.root


async def test_client_gone_mid_stream_is_source_aborted(tmp_path: Path) -> None:
    store, root = file_store_with_listing(tmp_path)
    source = FailingSource(3 * C + 5, ConnectionResetError("peer reset"))
    with pytest.raises(SourceAborted) as info:
        await store_stream(source, store, key="img", chunk_size=C)
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert os.listdir(root) == []


async def test_source_streamd_error_passes_through(tmp_path: Path) -> None:
    store, root = file_store_with_listing(tmp_path)
    source = FailingSource(2 * C, BadRequest("chunked encoding is malformed"))
    with pytest.raises(BadRequest, match="chunked encoding"):
        await store_stream(source, store, key="img", chunk_size=C)
    assert os.listdir(root) == []


async def test_a_bug_in_the_source_surfaces_as_itself(tmp_path: Path) -> None:
    store, root = file_store_with_listing(tmp_path)
    with pytest.raises(ZeroDivisionError):
        await store_stream(FailingSource(C, ZeroDivisionError()), store, key="img", chunk_size=C)
    assert os.listdir(root) == []


class StallingSource:
    """Serves ``good`` bytes, then waits forever: a client that stopped sending."""

    def __init__(self, good: int) -> None:
        self._inner = BytesSource(payload(good))
        self.stalled = trio.Event()

    async def readinto(self, buf: memoryview) -> int:
        n = await self._inner.readinto(buf)
        if n == 0:
            self.stalled.set()
            await trio.sleep_forever()
        return n


async def test_cancellation_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    store, root = file_store_with_listing(tmp_path)
    source = StallingSource(5 * C)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: store_stream(source, store, key="img", chunk_size=C))
            await source.stalled.wait()
            assert any(name.endswith(".tmp") for name in os.listdir(root))
            scope.cancel()
    assert scope.cancelled_caught
    assert os.listdir(root) == []


class LyingStore(MemoryStore):
    """Commits, but reports a size other than what it received."""

    async def write(self, chunks, *, key, size=None):  # type: ignore[no-untyped-def]
        stored = await super().write(chunks, key=key, size=size)
        return StoredObject(stored.location, stored.size + 1)


class QuittingStore(MemoryStore):
    """Commits after the first chunk, without reading the rest."""

    async def write(self, chunks, *, key, size=None):  # type: ignore[no-untyped-def]
        async for _ in chunks:
            break
        self.objects[key] = b"partial"
        return StoredObject(f"memory://{self.name}/{key}", 7)


async def test_store_reporting_wrong_size_is_an_error_and_its_object_removed() -> None:
    store = LyingStore()
    with pytest.raises(StoreError):
        await store_stream(BytesSource(payload(3 * C)), store, key="img", chunk_size=C)
    assert store.objects == {}


async def test_store_that_stops_reading_is_a_bug_and_its_object_removed() -> None:
    store = QuittingStore()
    with pytest.raises(RuntimeError, match="before reading all chunks"):
        await store_stream(BytesSource(payload(9 * C)), store, key="img", chunk_size=C)
    assert store.objects == {}


class CountingSource(BytesSource):
    """Records, at every read, how far the source is ahead of what the store has taken."""

    def __init__(self, data: bytes, store: ThrottledStore) -> None:
        super().__init__(data)
        self._store = store
        self.max_ahead = 0

    async def readinto(self, buf: memoryview) -> int:
        n = await super().readinto(buf)
        self.max_ahead = max(self.max_ahead, self.bytes_read - self._store.bytes_written)
        return n


async def test_memory_is_bounded_by_the_pool(autojump_clock: trio.abc.Clock) -> None:
    depth = 3
    store = ThrottledStore(MemoryStore(), delay=0.01)
    pool = BufferPool(C, depth)
    data = payload(40 * C)
    source = CountingSource(data, store)
    result = await store_stream(source, store, key="img", pool=pool)
    assert result.size == len(data)
    assert store.inner.objects["img"] == data  # type: ignore[attr-defined]
    assert pool.allocated == depth
    assert pool.high_water == depth  # the slow store did push back: the pool ran dry
    assert pool.in_use == 0
    # bytes read but not yet taken by the store all sit in pool buffers
    assert (depth - 1) * C < source.max_ahead <= depth * C


async def test_small_upload_allocates_one_buffer() -> None:
    pool = BufferPool(C, 4)
    await store_stream(BytesSource(b"tiny"), MemoryStore(), key="img", pool=pool)
    assert pool.allocated == 1


def test_errors_map_to_shared_classes() -> None:
    assert issubclass(SourceAborted, StreamdError) and SourceAborted.status == 400
    assert SizeCapExceeded.status == 413
    assert StoreError.status == 503


async def test_concurrent_uploads_do_not_starve_the_store_of_the_shared_limiter(
    tmp_path: Path,
) -> None:
    # each upload's hashers hold a thread for the whole transfer; if they took tokens of the
    # limiter the store's writes also need, enough concurrent uploads would wait forever
    limiter = trio.CapacityLimiter(2)
    store = FileStore(tmp_path, limiter=limiter)
    data = payload(8 * C)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(
                    functools.partial(
                        store_stream, BytesSource(data), store, key=f"img{i}", chunk_size=C,
                        limiter=limiter,
                    )
                )
    for i in range(3):
        assert (tmp_path / f"img{i}").read_bytes() == data


@pytest.mark.parametrize("fails", [False, True])
async def test_the_shared_budget_gets_every_buffer_back(tmp_path: Path, fails: bool) -> None:
    """Success or failure mid-stream, a transfer returns all it borrowed (none leak)."""
    budget = BufferBudget(C, 3)
    store = FileStore(tmp_path / "images")
    if fails:
        source: ByteSource = FailingSource(5 * C, ConnectionResetError())
        with pytest.raises(SourceAborted):
            await store_stream(source, store, key="img", chunk_size=C, queue_depth=4,
                               budget=budget, expected_size=8 * C)
    else:
        await store_stream(BytesSource(payload(8 * C)), store, key="img", chunk_size=C,
                           queue_depth=4, budget=budget)
    assert budget.lent == 0


async def test_hashing_without_storing_goes_through_a_discard_store() -> None:
    """Data kept elsewhere (a location's URL) is verified by the upload pipeline itself."""
    import hashlib

    import xxhash

    from streamd.io import BytesSource
    from streamd.io.stores.discard import DiscardStore

    data = random.Random(9).randbytes(3 * 1024 * 1024 + 11)
    result = await store_stream(BytesSource(data), DiscardStore(), key="verify",
                                os_hash_algo="sha256", chunk_size=1024 * 1024,
                                expected_size=len(data))
    assert result.size == len(data)
    assert result.checksum == hashlib.md5(data).hexdigest()
    assert result.os_hash_value == hashlib.sha256(data).hexdigest()
    assert result.xxh3 == xxhash.xxh3_128(data).hexdigest()


@pytest.mark.parametrize(("one_hash_thread", "threads"), [(False, 2), (True, 1)])
async def test_one_hash_thread_hashes_md5_and_the_os_hash_in_one_thread(
    monkeypatch: pytest.MonkeyPatch, one_hash_thread: bool, threads: int
) -> None:
    from streamd.io import pipeline

    made: list[object] = []

    class CountedFeed(pipeline._HashFeed):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(pipeline, "_HashFeed", CountedFeed)
    data = payload(2 * C + 5)
    result = await store_stream(BytesSource(data), MemoryStore(), key="img", chunk_size=C,
                                one_hash_thread=one_hash_thread)
    assert len(made) == threads
    assert result.os_hash_value == hashlib.sha512(data).hexdigest()

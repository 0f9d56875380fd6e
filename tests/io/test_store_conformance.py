"""What every store must do; runs against each store in ``conftest.STORES``."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from pathlib import Path

import pytest
import trio

from streamd.io import ObjectNotFound, Store, can_link
from tests.io.conftest import COUNTED_RANGES, LINKING, READ_CHUNK, StoreUnderTest

C = READ_CHUNK


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def feed(data: bytes, sizes: list[int] | None = None) -> AsyncIterator[memoryview]:
    """``data`` in chunks of ``sizes`` (cycled), from one reused buffer like the pipeline."""
    sizes = sizes or [C]
    buf = bytearray(max(sizes))
    pos = i = 0
    while pos < len(data):
        n = min(sizes[i % len(sizes)], len(data) - pos)
        buf[:n] = data[pos : pos + n]
        yield memoryview(buf)[:n]
        buf[:n] = b"\xee" * n  # a store that kept the view past next() sees garbage
        pos += n
        i += 1


async def read_all(store: Store, location: str, offset: int = 0, length: int | None = None):
    out = bytearray()
    async with aclosing(store.read(location, offset, length)) as chunks:
        async for chunk in chunks:
            out += chunk  # copy: the store may reuse the buffer for the next chunk
    return bytes(out)


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 5 * C + 4321])
async def test_round_trip(sut: StoreUnderTest, size: int) -> None:
    data = payload(size, seed=size)
    stored = await sut.store.write(feed(data, [C, 1000, 3 * C + 7]), key="img")
    assert stored.size == size
    assert await sut.store.stat(stored.location) == size
    assert await read_all(sut.store, stored.location) == data
    assert await sut.leftovers() == ["img"]


async def test_every_range(sut: StoreUnderTest) -> None:
    size = 3 * C + 5
    data = payload(size)
    stored = await sut.store.write(feed(data), key="img")
    points = sorted({0, 1, C - 1, C, C + 1, 2 * C, size - 1, size})
    lengths = [0, 1, C - 1, C, C + 1, 2 * C + 3, None]
    checked = 0
    for offset in points:
        for length in lengths:
            if length is not None and offset + length > size:
                continue
            end = size if length is None else offset + length
            got = await read_all(sut.store, stored.location, offset, length)
            assert got == data[offset:end], (offset, length)
            checked += 1
    assert checked > 40


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1), (10, 100), (200, None)])
async def test_range_outside_object_is_a_caller_bug(
    sut: StoreUnderTest, offset: int, length: int | None
) -> None:
    stored = await sut.store.write(feed(payload(100)), key="img")
    with pytest.raises(ValueError):
        await read_all(sut.store, stored.location, offset, length)


async def test_early_close_releases_reader(sut: StoreUnderTest) -> None:
    data = payload(4 * C)
    stored = await sut.store.write(feed(data), key="img")
    async with aclosing(sut.store.read(stored.location)) as chunks:
        async for first in chunks:
            assert bytes(first) == data[: len(first)]
            break
    await sut.store.delete(stored.location)
    assert await sut.leftovers() == []


async def test_delete_is_idempotent_and_missing_objects_are_not_found(
    sut: StoreUnderTest,
) -> None:
    stored = await sut.store.write(feed(b"abc"), key="img")
    await sut.store.delete(stored.location)
    await sut.store.delete(stored.location)
    assert await sut.leftovers() == []
    with pytest.raises(ObjectNotFound):
        await sut.store.stat(stored.location)
    with pytest.raises(ObjectNotFound):
        await read_all(sut.store, stored.location)


async def test_objects_are_independent_and_rewrites_replace(sut: StoreUnderTest) -> None:
    a = await sut.store.write(feed(b"a" * 10), key="a")
    b = await sut.store.write(feed(b"b" * 20), key="b")
    assert a.location != b.location
    b2 = await sut.store.write(feed(b"c" * 5), key="b")
    assert await read_all(sut.store, b2.location) == b"c" * 5
    assert await read_all(sut.store, a.location) == b"a" * 10
    assert await sut.leftovers() == ["a", "b"]


@pytest.mark.parametrize("key", ["", ".hidden", "a/b", "../x", "a\0b"])
async def test_unsafe_keys_are_refused(sut: StoreUnderTest, key: str) -> None:
    with pytest.raises(ValueError):
        await sut.store.write(feed(b"x"), key=key)
    assert await sut.leftovers() == []


class Boom(Exception):
    pass


async def test_failed_write_leaves_nothing(sut: StoreUnderTest) -> None:
    async def failing() -> AsyncIterator[memoryview]:
        async for chunk in feed(payload(3 * C)):
            yield chunk
        raise Boom

    async with aclosing(failing()) as chunks:
        with pytest.raises(Boom):
            await sut.store.write(chunks, key="img")
    assert await sut.leftovers() == []


async def test_cancelled_write_leaves_nothing(sut: StoreUnderTest) -> None:
    started = trio.Event()

    async def stalled() -> AsyncIterator[memoryview]:
        async for chunk in feed(payload(3 * C)):
            yield chunk
        started.set()
        await trio.sleep_forever()
        yield memoryview(b"")  # pragma: no cover

    async with aclosing(stalled()) as chunks:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(sut.store.write, chunks, key="img"))
            await started.wait()
            nursery.cancel_scope.cancel()
    assert await sut.leftovers() == []


async def test_declares_capabilities(sut: StoreUnderTest, request: pytest.FixtureRequest
                                     ) -> None:
    caps = sut.store.capabilities
    name = request.node.callspec.params["sut"]
    # the tables that pick the stores of the capability tests hold what the store declares
    assert (name in LINKING) == caps.hard_links
    assert (name in COUNTED_RANGES) == (caps.ranged_reads and sut.fetched is not None)
    assert isinstance(sut.store.name, str) and sut.store.name
    assert isinstance(caps.ranged_reads, bool) and isinstance(caps.sparse_writes, bool)
    assert isinstance(caps.hard_links, bool)
    for limit in (caps.max_readers, caps.max_writers):
        assert limit is None or (isinstance(limit, int) and limit > 0)
    assert not caps.read_only
    assert can_link(sut.store) == caps.hard_links
    if caps.hard_links:
        assert callable(getattr(sut.store, "link_from", None))


async def test_aclose_after_use(sut: StoreUnderTest) -> None:
    stored = await sut.store.write(feed(b"abc"), key="img")
    await sut.store.delete(stored.location)
    await sut.store.aclose()


@pytest.mark.parametrize("size", [0, 1, 5 * C + 4321])
async def test_announced_size_round_trip(sut: StoreUnderTest, size: int) -> None:
    """``size`` given, as the pipeline gives it for a body with a Content-Length."""
    data = payload(size, seed=size)
    stored = await sut.store.write(feed(data, [C, 1000]), key="img", size=size)
    assert stored.size == size
    assert await read_all(sut.store, stored.location) == data
    assert await sut.leftovers() == ["img"]


async def test_ranged_reads_fetch_only_the_range(counted_sut: StoreUnderTest) -> None:
    sut = counted_sut
    assert sut.fetched is not None
    size = 64 * C
    data = payload(size)
    stored = await sut.store.write(feed(data), key="img")
    offset = size - 2 * C - 3
    before = sut.fetched()
    assert await read_all(sut.store, stored.location, offset, C) == data[offset : offset + C]
    # a read-and-discard store would fetch the ~62 chunks before the range
    assert sut.fetched() - before < 4 * C


async def test_declared_hard_links_take_a_local_file(linking_sut: StoreUnderTest,
                                                     tmp_path: Path) -> None:
    sut = linking_sut
    assert can_link(sut.store)
    data = payload(3 * C + 1)
    source = tmp_path / "staged"
    source.write_bytes(data)
    stored = await sut.store.link_from(source, key="img")
    assert stored is not None and stored.size == len(data)
    assert await sut.store.stat(stored.location) == len(data)
    assert await read_all(sut.store, stored.location) == data
    assert source.read_bytes() == data  # the caller's name stays
    assert await sut.leftovers() == ["img"]
    replaced = await sut.store.link_from(source, key="img")
    assert replaced is not None and await sut.leftovers() == ["img"]

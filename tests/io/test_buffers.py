"""The buffer pool bounds a transfer's memory and catches buffers returned twice."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from streamd.io.buffers import BufferPool, SharedChunk


async def test_pool_waits_when_every_buffer_is_in_use() -> None:
    pool = BufferPool(16, 2)
    a, b = await pool.acquire(), await pool.acquire()
    got: list[bytearray] = []

    async def third() -> None:
        got.append(await pool.acquire())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(third)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        pool.release(a)
    assert got[0] is a
    assert (pool.allocated, pool.high_water, pool.in_use) == (2, 2, 2)
    pool.release(b)


async def test_release_twice_or_foreign_buffer_is_refused() -> None:
    pool = BufferPool(16, 2)
    buf = await pool.acquire()
    pool.release(buf)
    with pytest.raises(RuntimeError):
        pool.release(buf)
    with pytest.raises(RuntimeError):
        pool.release(bytearray(8))


async def test_shared_chunk_returns_buffer_after_last_consumer() -> None:
    pool = BufferPool(16, 1)
    buf = await pool.acquire()
    buf[:3] = b"abc"
    chunk = SharedChunk(pool, buf, 3, consumers=2)
    view = chunk.view
    assert bytes(view) == b"abc"
    chunk.release()
    assert pool.in_use == 1
    chunk.release()
    assert pool.in_use == 0
    with pytest.raises(ValueError):
        bytes(view)  # a consumer that kept the view fails loudly
    with pytest.raises(RuntimeError):
        chunk.release()

"""The buffer pool bounds a transfer's memory and catches buffers returned twice."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from streamd.io.buffers import BufferBudget, BufferPool, SharedChunk


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


# -- the budget shared by transfers ------------------------------------------------------------


async def test_one_transfer_alone_gets_its_full_depth_from_the_budget() -> None:
    budget = BufferBudget(16, 8)
    pool = BufferPool(16, 4, budget)
    bufs = [await pool.acquire() for _ in range(4)]
    assert pool.allocated == 1 and budget.lent == 3  # one own buffer, three borrowed
    for buf in bufs:
        pool.release(buf)
    assert budget.lent == 0 and pool.in_use == 0


async def test_transfers_share_the_budget_and_keep_their_own_buffer() -> None:
    budget = BufferBudget(16, 2)
    pools = [BufferPool(16, 4, budget) for _ in range(3)]
    held = [[await pool.acquire()] for pool in pools]  # each gets its own at once
    held[0].append(await pools[0].acquire())
    held[1].append(await pools[1].acquire())
    assert budget.lent == 2
    with trio.move_on_after(0.05) as waited:
        await pools[2].acquire()  # budget used up by the others
    assert waited.cancelled_caught
    assert sum(pool.in_use for pool in pools) == 3 + 2  # transfers + budget, not 3 x 4
    pools[0].release(held[0].pop())
    held[2].append(await pools[2].acquire())  # the borrowed one freed by pool 0
    assert budget.lent == 2


async def test_a_borrower_takes_its_own_buffer_when_that_comes_back_first() -> None:
    budget = BufferBudget(16, 1)
    other, pool = BufferPool(16, 4, budget), BufferPool(16, 4, budget)
    await other.acquire()
    stalled = await other.acquire()  # the budget's only buffer, kept by a stalled transfer
    own = await pool.acquire()
    got: list[object] = []

    async def take() -> None:
        got.append(await pool.acquire())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        pool.release(own)  # its own buffer returns while the budget is still empty
    assert got == [own]
    other.release(stalled)
    assert budget.lent == 0


async def test_close_gives_back_what_a_failed_transfer_never_released() -> None:
    budget = BufferBudget(16, 4)
    pool = BufferPool(16, 4, budget)
    for _ in range(4):
        await pool.acquire()
    assert budget.lent == 3
    pool.close()
    assert budget.lent == 0
    assert [await BufferPool(16, 4, budget).acquire() for _ in range(1)]  # usable again


async def test_a_budget_buffer_is_not_taken_for_a_pool_one() -> None:
    budget = BufferBudget(16, 1)
    pool = BufferPool(16, 2, budget)
    await pool.acquire()
    borrowed = await pool.acquire()
    pool.release(borrowed)
    with pytest.raises(RuntimeError):
        pool.release(borrowed)  # given back twice
    with pytest.raises(ValueError):
        BufferPool(32, 2, budget)  # the budget's buffers are another size

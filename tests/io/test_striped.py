"""``copy_striped``: several ranged reads into one file, hashed in order.

The source is a ranged reader over bytes in memory that yields at random checkpoints, so
the streams interleave differently from run to run (seeded): the file must hold the bytes,
the hash be the whole's, the prefix move only forward to ``size``, and the chunks handed on
with a move be the very bytes at its end. A source that gives fewer or more bytes than a
piece stops the copy short (the cache calls that a mismatch); one that fails raises its
own error; a cancelled copy leaves its file to its owner and no descriptor open.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import xxhash

from streamd.io import posix
from streamd.io.errors import StoreError
from streamd.io.striped import copy_striped
from streamd.units import KiB

CHUNK = 7 * KiB + 3  # not a divisor of the piece: pieces end in part-chunks


class Source:
    """Ranged reads of ``data``, in chunks, yielding control at random."""

    def __init__(self, data: bytes, seed: int, *, cut: int | None = None,
                 extra: int = 0, fail_at: int | None = None) -> None:
        self.data, self.rng = data, random.Random(seed)
        self.cut, self.extra, self.fail_at = cut, extra, fail_at
        self.asked: list[tuple[int, int]] = []
        self.open = 0

    async def __call__(self, offset: int, length: int) -> AsyncIterator[bytes]:
        self.asked.append((offset, length))
        self.open += 1
        try:
            end = offset + length
            if self.cut is not None:
                end = min(end, self.cut)
            end += self.extra if end == offset + length else 0
            position = offset
            while position < end:
                if self.fail_at is not None and position >= self.fail_at:
                    raise StoreError("the store broke off the read")
                for _ in range(self.rng.randrange(3)):
                    await trio.lowlevel.checkpoint()
                chunk = self.data[position:min(position + CHUNK, end)] or b"x" * self.extra
                yield chunk
                position += len(chunk)
        finally:
            self.open -= 1


async def copy(tmp_path: Path, source: Source, size: int, *, streams: int, piece: int
               ) -> tuple[int, str, list[tuple[int, bytes]], bytes]:
    """(bytes the source gave, the hash, the prefix's moves, the file)"""
    path = tmp_path / "fill"
    fd = posix.open_new(path)
    moves: list[tuple[int, bytes]] = []
    hasher = xxhash.xxh3_128()
    try:
        got = await copy_striped(
            source, fd, path, size, streams=streams, piece=piece,
            calls=posix.BlockingCalls(None, "test"), hasher=hasher,
            advanced=lambda end, data: moves.append((end, data)), progressed=lambda: None)
    finally:
        os.close(fd)
    return got, hasher.hexdigest(), moves, path.read_bytes()


@pytest.mark.parametrize(("streams", "piece", "seed"),
                         [(1, 64 * KiB, 1), (2, 64 * KiB, 2), (3, 50 * KiB, 3),
                          (4, 33 * KiB, 4), (8, 64 * KiB, 5), (2, 10**6, 6)])
async def test_the_file_and_the_hash_are_the_sources(
    tmp_path: Path, streams: int, piece: int, seed: int
) -> None:
    data = random.Random(seed).randbytes(300 * KiB + 5)
    source = Source(data, seed)
    reached, digest, moves, written = await copy(tmp_path, source, len(data),
                                                 streams=streams, piece=piece)
    assert reached == len(data) and written == data
    assert digest == xxhash.xxh3_128(data).hexdigest()
    ends = [end for end, _ in moves]
    assert ends == sorted(set(ends)) and ends[-1] == len(data)
    for end, chunk in moves:
        assert chunk == data[end - len(chunk):end]
    if streams == 1 or piece >= len(data):
        assert source.asked == [(0, len(data))]  # one read of the whole
    else:
        assert sorted(source.asked) == [(s, min(piece, len(data) - s))
                                        for s in range(0, len(data), piece)]
    assert source.open == 0


async def test_streams_run_at_once_and_ahead_bytes_are_hashed_from_the_file(
    tmp_path: Path
) -> None:
    data = random.Random(7).randbytes(256 * KiB)
    seen_open = []
    given: set[int] = set()  # the chunks the source gave (by identity; all kept alive)
    kept = []

    class Watched(Source):
        async def __call__(self, offset: int, length: int) -> AsyncIterator[bytes]:
            async for chunk in super().__call__(offset, length):
                seen_open.append(self.open)
                kept.append(chunk)
                given.add(id(chunk))
                yield chunk

    reached, digest, moves, _ = await copy(tmp_path, Watched(data, 7), len(data), streams=4,
                                           piece=64 * KiB)
    assert reached == len(data) and digest == xxhash.xxh3_128(data).hexdigest()
    assert max(seen_open) == 4
    # some moves handed on the source's chunks as they came, others bytes another stream
    # had written ahead, read back from the file
    assert any(id(chunk) in given for _, chunk in moves)
    assert any(id(chunk) not in given for _, chunk in moves)


@pytest.mark.parametrize("streams", [1, 3])
async def test_a_short_source_stops_the_copy_short(tmp_path: Path, streams: int) -> None:
    data = random.Random(8).randbytes(200 * KiB)
    source = Source(data, 8, cut=150 * KiB)
    got, _, moves, _ = await copy(tmp_path, source, len(data), streams=streams,
                                  piece=40 * KiB)
    # a stream that meets the cut may stop the copy before the prefix has moved at all
    assert got < len(data) and max((end for end, _ in moves), default=0) <= 150 * KiB
    assert source.open == 0


@pytest.mark.parametrize("streams", [1, 3])
async def test_a_long_source_stops_the_copy_short(tmp_path: Path, streams: int) -> None:
    data = random.Random(9).randbytes(200 * KiB)
    source = Source(data, 9, extra=5)
    got, _, _, written = await copy(tmp_path, source, len(data), streams=streams,
                                    piece=40 * KiB)
    assert got != len(data) and len(written) <= len(data)  # longer, or cut off by it
    assert source.open == 0


async def test_a_failing_read_raises_its_own_error(tmp_path: Path) -> None:
    data = random.Random(10).randbytes(200 * KiB)
    source = Source(data, 10, fail_at=130 * KiB)
    with pytest.raises(StoreError, match="broke off"):
        await copy(tmp_path, source, len(data), streams=3, piece=40 * KiB)
    assert source.open == 0


async def test_a_cancelled_copy_closes_everything(tmp_path: Path, autojump_clock: object
                                                  ) -> None:
    data = random.Random(11).randbytes(200 * KiB)
    fds_before = len(os.listdir("/proc/self/fd"))

    class Stalls(Source):
        async def __call__(self, offset: int, length: int) -> AsyncIterator[bytes]:
            async with contextlib.aclosing(super().__call__(offset, length)) as chunks:
                async for chunk in chunks:
                    yield chunk
                    if offset > 0:
                        await trio.sleep_forever()  # the streams ahead hang

    source = Stalls(data, 11)
    with trio.move_on_after(0.5) as scope:
        await copy(tmp_path, source, len(data), streams=3, piece=40 * KiB)
    assert scope.cancelled_caught
    assert source.open == 0
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_a_stream_reads_its_next_chunk_while_it_writes(tmp_path: Path) -> None:
    """The store's next chunk is asked for before the write of the one before has ended:
    a write that waits for that read would never end without the read-ahead."""
    data = random.Random(12).randbytes(10 * CHUNK)
    asked_next = trio.Event()

    class Counted(Source):
        async def __call__(self, offset: int, length: int) -> AsyncIterator[bytes]:
            async with contextlib.aclosing(super().__call__(offset, length)) as chunks:
                first = True
                async for chunk in chunks:
                    if not first:
                        asked_next.set()
                    first = False
                    yield chunk

    class WaitingWrites(posix.BlockingCalls):
        async def io(self, action: str, fn, *args):  # type: ignore[no-untyped-def]
            if action == "write" and not asked_next.is_set():
                with trio.fail_after(5):
                    await asked_next.wait()
            return await super().io(action, fn, *args)

    path = tmp_path / "fill"
    fd = posix.open_new(path)
    hasher = xxhash.xxh3_128()
    try:
        got = await copy_striped(
            Counted(data, 12), fd, path, len(data), streams=1, piece=len(data),
            calls=WaitingWrites(None, "test"), hasher=hasher,
            advanced=lambda end, chunk: None, progressed=lambda: None)
    finally:
        os.close(fd)
    assert got == len(data) and path.read_bytes() == data
    assert hasher.hexdigest() == xxhash.xxh3_128(data).hexdigest()


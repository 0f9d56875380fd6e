"""A ranged source copied into a file by several streams at once, its bytes hashed in order.

Why: one GET is not the most an object store gives. Measured on the bench's Swift (one
node on loopback, a 1 GiB object, curl): one GET 291-498 MiB/s, two ranged GETs of its
halves at once 628-696 MiB/s together, three 777-798. A cache fill that reads one image
for many clients is worth those streams, where the store is the limit.

It is not the default (``cache_fill_streams = 1``): with Swift on the same 2 cores the CPU
is the limit. A/B on 2026-12-06, one Swift, servers of 1 and 2 streams side by side, a
1 GiB image made cold before each download, rounds 2-3 of 3 (``/tmp``-style script in the
session note): 1 client 303-317 MiB/s at 1.7-2.1 server CPU-s (1 stream) vs 281-331 at
2.6-3.1 (2 streams, 64 MiB pieces); 8 clients 5.6-6.0 s at 4.4-4.7 CPU-s vs 7.0-8.3 s at
6.8-8.0; 16 or 8 MiB pieces (with readers sharing 32 or 24 MiB of recent chunks) were
slower still. The prefix moves a piece at a time, in bursts that outrun the readers' shared
chunks: each of the 8 then reads the file itself.

The image is cut into ``piece``-sized pieces, taken in order by ``streams`` tasks, each
piece one ranged read written at its offset (``pwrite``): memory is a chunk per stream and
``READ_AHEAD`` more, never a piece. A stream reads its next chunks while it writes one (a
task of its own and a channel of ``READ_AHEAD``): each read and each write is a thread hop,
and one after the other the store's socket waited on both and on the event loop's turns
between them (a cold download right after its upload, 1 client, paired A/B on the bench's
Swift, 5 rounds: 229-242 MiB/s before, 259-278 with the read-ahead; 8 clients 4.8-6.0 s
before, 5.0-5.7 after). The *prefix* (the bytes from 0 that are all written) is what
readers may read and what is hashed: a chunk that extends the prefix as it is written is
hashed and handed on as it is (no copy), while the bytes another stream wrote ahead are
read back from the file (the page cache) once the prefix reaches them, in a worker thread,
a few MiB at a time, and hashed and handed on as those reads' chunks. ``advanced`` is told
every move of the prefix, in order, with its bytes: readers that keep up with a fill share
its chunks whichever stream brought them (with the ahead bytes left to readers to read from
the file, 8 readers behind a 2-stream fill of 1 GiB cost the server 8-10 CPU-s instead of
5-7).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from streamd.io import posix
from streamd.io.hashing import Hasher
from streamd.units import KiB, MiB

RangeSource = Callable[[int, int], AsyncIterator[memoryview | bytes]]
# the bytes written ahead are read back from the file CATCH_UP at a time (a thread hop), in
# chunks of CATCH_UP_CHUNK (those of the stores' reads)
CATCH_UP = 4 * MiB
CATCH_UP_CHUNK = 512 * KiB
# chunks a stream reads from its store ahead of its writes (memory: this many chunks more)
READ_AHEAD = 2


async def copy_striped(
    source: RangeSource, fd: int, path: Path, size: int, *, streams: int, piece: int,
    calls: posix.BlockingCalls, hasher: Hasher,
    advanced: Callable[[int, bytes], None], progressed: Callable[[], None],
) -> int:
    """Copy ``[0, size)`` of ``source`` into ``fd`` (the file at ``path``, opened for
    writing) and feed it to ``hasher`` in order; return how many bytes the source gave:
    ``size``, or another count when a piece came short or long (the source does not hold
    what it was asked for: the other streams are stopped, and the bytes past a piece's end
    are neither written nor hashed). ``progressed`` is called at every chunk written."""
    if streams <= 1 or size <= piece:
        piece = max(size, 1)  # one stream reads the whole: no piece costs a request more
    pieces = collections.deque((start, min(start + piece, size))
                               for start in range(0, size, piece))
    marks: dict[int, int] = {}  # a piece's start: the end of its bytes written so far
    prefix = got = 0
    lock = trio.Lock()
    read_fd = -1

    async def advance(data: bytes | None, data_end: int) -> None:
        nonlocal prefix, read_fd
        async with lock:
            while True:
                start = prefix - prefix % piece
                mark = marks.get(start, start)
                if mark <= prefix:
                    return
                if data is not None and data_end == mark and mark - len(data) == prefix:
                    hasher.update(data)
                    prefix = mark
                    advanced(prefix, data)
                else:
                    if read_fd < 0:
                        read_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    stop = min(mark, prefix + CATCH_UP)
                    for chunk in await calls.io("read", _read_hashed, read_fd, hasher,
                                                prefix, stop):
                        prefix += len(chunk)
                        advanced(prefix, chunk)
                data = None
                if prefix == min(start + piece, size):
                    marks.pop(start, None)

    async def stream(cancel_scope: trio.CancelScope) -> None:
        nonlocal got
        while pieces:
            start, end = pieces.popleft()
            position = marks[start] = start
            # the store's next chunks are read while this one is written: a read waits
            # neither for the write nor for the event loop's turn to start the next read
            send, receive = trio.open_memory_channel[bytes](READ_AHEAD)
            try:
                async with trio.open_nursery() as pulling:
                    pulling.start_soon(_pull, source(start, end - start), send)
                    async with receive:
                        async for data in receive:
                            got += len(data)
                            if position + len(data) > end:
                                position = -1  # more than asked: not written
                                break
                            await calls.io("write", posix.pwrite_all, fd, memoryview(data),
                                           position)
                            position = marks[start] = position + len(data)
                            progressed()
                            await advance(data, position)
                    pulling.cancel_scope.cancel()  # a long piece: its reader stops here
            except BaseExceptionGroup as group:
                raise _single(group) from None
            if position != end:
                cancel_scope.cancel()  # the source is not what it was said to be
                return

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(min(streams, len(pieces))):
                nursery.start_soon(stream, nursery.cancel_scope)
    except BaseExceptionGroup as group:
        # a stream's failure is the copy's (it cancelled the others): raised as itself
        raise _single(group) from None
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    return got


async def _pull(reader: AsyncIterator[memoryview | bytes],
                send: trio.MemorySendChannel[bytes]) -> None:
    """``reader``'s chunks into ``send``, each copied out of the store's buffer (which the
    store may reuse for its next chunk): the one copy, written and handed on as is."""
    async with send, contextlib.aclosing(reader):  # type: ignore[type-var]
        async for chunk in reader:
            await send.send(chunk if isinstance(chunk, bytes) else bytes(chunk))


def _single(group: BaseExceptionGroup) -> BaseException:
    """The copy's failure: the first in ``group`` that is not a cancellation it caused
    (with a read-ahead, two streams can both meet a broken store before either is
    cancelled: one cause, raised once), or the group itself when all are cancellations."""
    _, failures = group.split(trio.Cancelled)
    if failures is None:
        return group
    first: BaseException = failures
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _read_hashed(fd: int, hasher: Hasher, start: int, end: int) -> list[bytes]:
    """``[start, end)`` of the file, hashed, in chunks (blocking)."""
    chunks = []
    while start < end:
        data = os.pread(fd, min(CATCH_UP_CHUNK, end - start), start)
        if not data:
            raise OSError(f"the file ends at {start}, before {end}")
        hasher.update(data)
        chunks.append(data)
        start += len(data)
    return chunks

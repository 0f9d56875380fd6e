"""What only the file store does: holes, space errors, foreign locations, temp reaping."""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from functools import partial
from pathlib import Path

import pytest
import trio

from streamd.io import FileStore, ObjectNotFound, StoreFull, ZeroSource, posix, store_stream
from streamd.io.posix import is_zero
from streamd.io.stores import file as file_store
from streamd.io.stores.file import SPARSE_BLOCK
from streamd.units import KiB, MiB

BLOCK = 512  # st_blocks unit


async def read_back_digest(store: FileStore, location: str) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    async with aclosing(store.read(location)) as chunks:
        async for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


async def test_zero_image_takes_no_blocks(tmp_path: Path) -> None:
    size = 64 * MiB
    store = FileStore(tmp_path)
    result = await store_stream(ZeroSource(size), store, key="img")
    st = os.stat(tmp_path / "img")
    assert st.st_size == size
    assert st.st_blocks * BLOCK <= 64 * KiB  # ~0; allow a file system's metadata block
    zeros = hashlib.sha256(bytes(size)).hexdigest()
    assert await read_back_digest(store, result.location) == (size, zeros)
    assert result.os_hash_value == hashlib.sha512(bytes(size)).hexdigest()


def mixed_runs() -> bytes:
    """Zero and data runs of awkward lengths, ending in zeros (the tail needs ftruncate)."""
    rng = random.Random(7)
    runs = [
        bytes(1 * MiB),
        rng.randbytes(10),
        bytes(SPARSE_BLOCK * 3 + 5),
        rng.randbytes(SPARSE_BLOCK),
        bytes(3),
        rng.randbytes(SPARSE_BLOCK - 1),
        bytes(2 * MiB + 17),
        rng.randbytes(1),
        bytes(SPARSE_BLOCK * 5),
    ]
    return b"".join(runs)


async def chunked(data: bytes, size: int) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for pos in range(0, len(data), size):
        yield view[pos : pos + size]


@pytest.mark.parametrize("chunk", [1 * MiB, 100 * KiB + 1, 3 * MiB])
async def test_mixed_zero_and_data_runs_read_back_identical(tmp_path: Path, chunk: int) -> None:
    data = mixed_runs()
    store = FileStore(tmp_path, read_chunk=77 * KiB)
    async with aclosing(chunked(data, chunk)) as chunks:
        stored = await store.write(chunks, key="img")
    assert stored.size == len(data)
    assert (tmp_path / "img").read_bytes() == data
    st = os.stat(tmp_path / "img")
    assert st.st_blocks * BLOCK < len(data) // 2  # the zero runs became holes


def test_is_zero() -> None:
    assert is_zero(memoryview(bytes(3 * MiB + 1)))
    assert is_zero(memoryview(b""))
    data = bytearray(3 * MiB + 1)
    data[-1] = 1
    assert not is_zero(memoryview(data))


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "s3://bucket/img",
        "file://{root}/../img",
        "file://{root}/.img.0123.tmp",
        "file://{root}/sub/img",
        "file://relative/img",
    ],
)
async def test_locations_outside_the_store_name_no_object(tmp_path: Path, location: str) -> None:
    store = FileStore(tmp_path / "images")
    await store.write(chunked(b"data", 4), key="img")
    location = location.format(root=store.root)
    with pytest.raises(ObjectNotFound):
        await store.stat(location)
    with pytest.raises(ObjectNotFound):
        await store.delete(location)
    with pytest.raises(ObjectNotFound):
        async with aclosing(store.read(location)) as chunks:
            async for _ in chunks:
                pass


async def test_reap_temp_files_spares_writes_in_progress(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    (tmp_path / ".old.1234.tmp").write_bytes(b"left by a crash")
    (tmp_path / "img").write_bytes(b"a complete image")
    started = trio.Event()

    async def stalled() -> AsyncIterator[memoryview]:
        yield memoryview(b"some data")
        started.set()
        await trio.sleep_forever()
        yield memoryview(b"")  # pragma: no cover

    async with aclosing(stalled()) as chunks, trio.open_nursery() as nursery:
        nursery.start_soon(partial(store.write, chunks, key="new"))
        await started.wait()
        future = 10**10  # everything is old by then
        assert await store.reap_temp_files(older_than=60, now=future) == 1
        assert len([n for n in os.listdir(tmp_path) if n.startswith(".new.")]) == 1
        nursery.cancel_scope.cancel()
    assert sorted(os.listdir(tmp_path)) == ["img"]
    assert await store.reap_temp_files(older_than=60) == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, or a skip where mounting is not allowed (the RLIMIT test still runs)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


async def test_out_of_space_is_store_full_and_leaves_nothing(small_tmpfs: Path) -> None:
    store = FileStore(small_tmpfs / "images")
    data = random.Random(1).randbytes(4 * MiB)
    async with aclosing(chunked(data, 1 * MiB)) as chunks:
        with pytest.raises(StoreFull) as info:
            await store.write(chunks, key="img")
    assert info.value.status == 507
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert str(small_tmpfs) not in info.value.message
    assert os.listdir(store.root) == []


EFBIG_SCRIPT = """
import json, os, random, resource, sys
import trio
from streamd.io import BytesSource, FileStore, StoreFull, ZeroSource, ignore_sigxfsz, store_stream

ignore_sigxfsz()
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
store = FileStore(__import__("pathlib").Path(sys.argv[1]))

async def attempt(source):
    try:
        await store_stream(source, store, key="img")
    except StoreFull as exc:
        return ["StoreFull", exc.__cause__.errno, sorted(os.listdir(store.root))]
    return ["stored", None, sorted(os.listdir(store.root))]

async def main():
    data = random.Random(1).randbytes(3 << 20)
    print(json.dumps([await attempt(BytesSource(data)), await attempt(ZeroSource(3 << 20))]))

trio.run(main)
"""


async def test_file_size_limit_is_store_full_and_leaves_nothing(tmp_path: Path) -> None:
    """Past RLIMIT_FSIZE, with SIGXFSZ ignored: EFBIG from write, and from the sparse tail's
    ftruncate. A subprocess, so that the limit does not apply to the test run."""
    done = await trio.run_process(
        [sys.executable, "-c", EFBIG_SCRIPT, str(tmp_path / "images")],
        capture_stdout=True,
        cwd=Path(__file__).parents[2],
    )
    data_write, zero_tail = json.loads(done.stdout)
    assert data_write == ["StoreFull", errno.EFBIG, []]
    assert zero_tail == ["StoreFull", errno.EFBIG, []]


# -- O_DIRECT writes and cached reads ------------------------------------------------------


class ChunkRecorder:
    """Chunks for ``FileStore.write`` that remember which descriptor each write used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[str, int, int]] = []  # (kind, offset, length)
        real_pwrite = os.pwrite

        def pwrite(fd: int, data: memoryview, offset: int) -> int:
            self.writes.append(("direct" if _is_direct(fd) else "buffered", offset, len(data)))
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(file_store.os, "pwrite", pwrite)


def _is_direct(fd: int) -> bool:
    with open(f"/proc/self/fdinfo/{fd}") as info:
        return bool(int(info.read().split("flags:")[1].split()[0], 8) & os.O_DIRECT)


async def _write_in_two_aligned_chunks(tmp_path: Path, data: bytes) -> None:
    views = [_page_aligned(data[:MiB]), _page_aligned(data[MiB:])]
    await FileStore(tmp_path).write(_chunks(views), key="img")
    assert (tmp_path / "img").read_bytes() == data


async def _chunks(views: list[memoryview]) -> AsyncIterator[memoryview]:
    for view in views:
        yield view


def _page_aligned(data: bytes) -> memoryview:
    buf = mmap.mmap(-1, max(len(data), 1), flags=mmap.MAP_PRIVATE)
    buf[: len(data)] = data
    return memoryview(buf)[: len(data)]


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="Linux only")
async def test_aligned_chunks_bypass_the_page_cache_and_the_rest_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    aligned = rng.randbytes(1 * MiB)
    tail = rng.randbytes(1000)  # a length no O_DIRECT write can take
    unaligned = memoryview(bytearray(b"x" + rng.randbytes(8 * KiB)))[1:]  # odd address
    recorder = ChunkRecorder(monkeypatch)
    store = FileStore(tmp_path)
    views = [_page_aligned(aligned), unaligned, _page_aligned(tail)]
    written = await store.write(_chunks(views), key="img")
    assert recorder.writes == [
        ("direct", 0, 1 * MiB),
        ("buffered", 1 * MiB, 8 * KiB),  # page-aligned offset and length, odd address
        ("buffered", 1 * MiB + 8 * KiB, 1000),
    ]
    expected = aligned + bytes(unaligned) + tail
    assert written.size == len(expected)
    assert (tmp_path / "img").read_bytes() == expected


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="Linux only")
async def test_a_file_system_that_refuses_o_direct_gets_plain_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(4).randbytes(2 * MiB)
    real_open = os.open

    def no_direct_open(path: str, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(file_store.os, "open", no_direct_open)
    recorder = ChunkRecorder(monkeypatch)
    await _write_in_two_aligned_chunks(tmp_path, data)
    assert [kind for kind, _, _ in recorder.writes] == ["buffered", "buffered"]


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="Linux only")
async def test_a_direct_write_refused_with_einval_is_written_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system wanting a larger alignment than ours: that write and the rest fall back."""
    data = random.Random(5).randbytes(2 * MiB)
    recorder = ChunkRecorder(monkeypatch)
    recorded_pwrite = file_store.os.pwrite

    def picky_pwrite(fd: int, view: memoryview, offset: int) -> int:
        if _is_direct(fd):
            recorder.writes.append(("refused", offset, len(view)))
            raise OSError(errno.EINVAL, "Invalid argument")
        return recorded_pwrite(fd, view, offset)

    monkeypatch.setattr(file_store.os, "pwrite", picky_pwrite)
    await _write_in_two_aligned_chunks(tmp_path, data)
    assert recorder.writes == [
        ("refused", 0, MiB),
        ("buffered", 0, MiB),
        ("buffered", MiB, MiB),  # no second O_DIRECT attempt
    ]


async def test_reads_answered_from_the_page_cache_and_from_a_thread_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-loop RWF_NOWAIT read and the thread's read return the same bytes."""
    data = random.Random(6).randbytes(3 * MiB + 123)
    (tmp_path / "img").write_bytes(data)  # just written: in the page cache
    store = FileStore(tmp_path, read_chunk=1 * MiB)
    location = f"file://{tmp_path / 'img'}"
    cached = []
    real = posix.read_cached

    def counting(fd: int, view: memoryview, offset: int) -> int | None:
        got = real(fd, view, offset)
        cached.append(got)
        return got

    monkeypatch.setattr(posix, "read_cached", counting)
    expected = (len(data), hashlib.sha256(data).hexdigest())
    assert await read_back_digest(store, location) == expected
    if hasattr(os, "RWF_NOWAIT"):
        assert cached and all(got for got in cached)  # every chunk came from the cache
    monkeypatch.setattr(posix, "read_cached", lambda fd, view, offset: None)
    assert await read_back_digest(store, location) == expected  # all through the thread

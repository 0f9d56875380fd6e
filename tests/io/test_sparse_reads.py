"""Reads that do not read holes: ``posix.pread_sparse`` (a stage sealed for its digests) and
the transfer client's ``localfile.read_runs`` (a download or upload checked against a digest).

Both must give the file's bytes, zeros where the holes are, and leave the holes out of the
page cache: a read of a hole would have put zero-filled pages there (what made sealing a
10 GiB stage holding 1 GiB of data evict everything else)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import mmap
import os
import random
from pathlib import Path

import xxhash

from streamd.io import posix
from streamd.transfer import localfile

MiB = 1024 * 1024
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident(path: Path, offset: int) -> bool:
    """Is the page at ``offset`` in the page cache? ``mincore`` on a mapping, which, unlike
    a read (even an ``RWF_NOWAIT`` one: a hole needs no I/O), does not bring it in."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        page = offset - offset % mmap.PAGESIZE
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m, page))
        vec = (ctypes.c_ubyte * 1)()
        assert _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(mmap.PAGESIZE), vec) == 0
        del addr  # the exported buffer must go before the mapping closes
        return bool(vec[0] & 1)


def sparse_file(path: Path) -> bytes:
    """8 MiB: a hole, 1 MiB of data, a 5 MiB hole, 1 MiB of data, a hole to the end."""
    rng = random.Random(7)
    data = bytes(MiB) + rng.randbytes(MiB) + bytes(5 * MiB) + rng.randbytes(MiB // 2) \
        + bytes(MiB // 2)
    with open(path, "wb") as f:
        for start in (MiB, 7 * MiB):
            f.seek(start)
            f.write(data[start:start + (MiB if start == MiB else MiB // 2)])
        f.truncate(len(data))
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # nothing of it cached to start
    finally:
        os.close(fd)
    return data


def test_pread_sparse_gives_the_bytes_and_leaves_holes_unread(tmp_path: Path) -> None:
    path = tmp_path / "stage"
    data = sparse_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = memoryview(bytearray(3 * MiB))
        out, pos, calls = bytearray(), 0, 0
        while got := posix.pread_sparse(fd, buf, pos):
            out += buf[:got]
            pos += got
            calls += 1
        assert bytes(out) == data
        assert calls >= 5  # a hole is one piece, whatever the buffer's size
        for hole in (0, 2 * MiB, 6 * MiB, 7 * MiB + MiB // 2):
            assert not resident(path, hole), hole
        assert resident(path, MiB)  # the data was read
        buf[:4] = b"abcd"  # a read in the middle of a hole still fills zeros
        assert posix.pread_sparse(fd, buf[:4], 3 * MiB) == 4 and bytes(buf[:4]) == bytes(4)
    finally:
        os.close(fd)


def test_client_digests_of_a_sparse_file_skip_its_holes(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    data = sparse_file(path)
    found = localfile.digests(path, ("md5", "sha512", "xxh3_128"))
    assert found == {"md5": hashlib.md5(data).hexdigest(),
                     "sha512": hashlib.sha512(data).hexdigest(),
                     "xxh3_128": xxhash.xxh3_128(data).hexdigest()}
    digest = localfile.Digest({"os_hash_algo": "sha512",
                               "os_hash_value": hashlib.sha512(data).hexdigest()})
    fd = os.open(path, os.O_RDONLY)
    try:
        digest.update_from(fd, 0, 3 * MiB)  # in two calls, split inside a hole
        digest.update_from(fd, 3 * MiB, len(data))
        assert digest.check("disk.img") == "sha512"
        for hole in (0, 2 * MiB, 6 * MiB):
            assert not resident(path, hole), hole
        assert resident(path, MiB)
    finally:
        os.close(fd)

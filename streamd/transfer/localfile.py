"""The local side of a transfer: the image file, its holes, its digests, and the record
that lets a cut download resume (``<file>.transfer``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from streamd.sparse import Extent, extents, merge, punch_hole

MiB = 1024 * 1024
HASH_READ = 4 * MiB  # one read of the digest pass; large enough that syscalls do not show
ZERO_UNIT = 1 * MiB  # a run of zeros this long in received data becomes a hole
_ZEROS = bytes(ZERO_UNIT)


class VerificationFailed(Exception):
    """The bytes do not have the digest the server recorded."""


def file_extents(path: Path) -> list[Extent]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return extents(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def read_runs(fd: int, start: int, end: int, buf: memoryview) -> Iterator[memoryview]:
    """Bytes ``[start, end)`` of ``fd`` in pieces of at most ``len(buf)``, for a hash.

    Holes are not read: their zeros come from memory. Reading a hole makes the kernel fill
    page-cache pages with zeros; 9 GiB of them evicted everything else and cost 6-20 s of
    system time here, where the same zeros from memory cost nothing but the hash."""
    zeros = memoryview(_ZEROS)  # what a hole hashes as, a MiB at a time
    for run in extents(fd, end, start):
        pos = run.start
        while pos < run.end:
            n = min(len(zeros) if run.zero else len(buf), run.end - pos)
            if run.zero:
                yield zeros[:n]
            else:
                got = os.preadv(fd, [buf[:n]], pos)
                if got == 0:
                    raise VerificationFailed(f"the file ends at {pos}, before {end}")
                n = got
                yield buf[:n]
            pos += n


def _hasher(name: str) -> Any:
    """A fresh hasher: hashlib's names and ``xxh3_128`` (the client imports none of the
    server's modules, so not streamd.io.hashing)."""
    return xxhash.xxh3_128() if name == "xxh3_128" else hashlib.new(name,
                                                                     usedforsecurity=False)


def digests(path: Path, names: Iterable[str]) -> dict[str, str]:
    """The file's digests by name: hashlib's names and ``xxh3_128``, one read for all."""
    hashers = {name: _hasher(name) for name in names}
    buf = memoryview(bytearray(HASH_READ))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for piece in read_runs(fd, 0, os.fstat(fd).st_size, buf):
            for h in hashers.values():
                h.update(piece)
    finally:
        os.close(fd)
    return {name: h.hexdigest() for name, h in hashers.items()}


class Digest:
    """The one digest a file is checked by: ``xxh3`` when given (the xxh3-128 a streamd
    server recorded, offered with the extents), else the image's ``os_hash_value`` when this
    Python has its algorithm, else its ``checksum`` (md5), as glanceclient checks. Fed in
    order.

    Why xxh3 first: the client checks for corruption between the server's disk and its own
    (the digest comes from the same server as the bytes, so a cryptographic one proves
    nothing more), and sha512 of a 10 GiB sparse image costs ~20 s here, zeros included,
    where xxh3 costs well under one."""

    def __init__(self, image: dict[str, Any], xxh3: str | None = None) -> None:
        algo = image.get("os_hash_algo") if image.get("os_hash_value") else None
        if xxh3:
            self.name, self.expected = "xxh3_128", xxh3
        elif algo and algo in hashlib.algorithms_available:
            self.name, self.expected = algo, image["os_hash_value"]
        else:
            self.name, self.expected = "md5", image.get("checksum")
        self._hash = _hasher(self.name)
        self._buf = memoryview(bytearray(HASH_READ))

    def update_from(self, fd: int, start: int, end: int) -> None:
        """Hash bytes ``[start, end)`` of ``fd`` (blocking: call it from a thread)."""
        for piece in read_runs(fd, start, end, self._buf):
            self._hash.update(piece)

    def check(self, what: str) -> str:
        """VerificationFailed unless the bytes fed had the expected digest; say which."""
        if self.expected is None:
            return "nothing to check (the image records no digest)"
        found = self._hash.hexdigest()
        if found != self.expected:
            raise VerificationFailed(f"{what}: {self.name} {found}, the image records "
                                     f"{self.expected}")
        return self.name


def verify(path: Path, image: dict[str, Any]) -> str:
    """Check the file against the image's digest (``Digest``); say which was checked."""
    digest = Digest(image)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        digest.update_from(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return digest.check(str(path))


def write_block(fd: int, data: bytes | memoryview, offset: int, *, holes: bool) -> int:
    """Write ``data`` at ``offset``; its zero MiBs as holes (``holes``: the range is known to
    be a hole already, else one is punched). Returns the zero bytes not written."""
    view = memoryview(data)
    skipped = 0
    for pos in range(0, len(view), ZERO_UNIT):
        piece = view[pos:pos + ZERO_UNIT]
        if bytes(piece) == _ZEROS[:len(piece)]:
            skipped += len(piece)
            if not holes:
                punch_hole(fd, offset + pos, len(piece))
            continue
        done = 0
        while done < len(piece):
            done += os.pwrite(fd, piece[done:], offset + pos + done)
    return skipped


def is_zero(data: bytes | memoryview) -> bool:
    """All zeros? (A copy and a memcmp per MiB: ~0.3 ms, where a scan costs ~9 ms.)"""
    view = memoryview(data)
    return all(bytes(view[p:p + ZERO_UNIT]) == _ZEROS[:len(view[p:p + ZERO_UNIT])]
               for p in range(0, len(view), ZERO_UNIT))


@dataclass
class ResumeRecord:
    """``<file>.transfer``: which image the file is being filled from, and which ranges
    are durable in it (END exclusive)."""

    path: Path
    image_id: str
    checksum: str | None
    size: int
    done: list[tuple[int, int]]

    @classmethod
    def load(cls, path: Path, image: dict[str, Any]) -> ResumeRecord | None:
        """The record of an earlier run for this very image (same id, size and checksum)."""
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if (body.get("image_id"), body.get("checksum"), body.get("size")) != (
                image["id"], image.get("checksum"), image["size"]):
            return None
        return cls(path, image["id"], image.get("checksum"), image["size"],
                   [(int(s), int(e)) for s, e in body.get("done", [])])

    def save(self, done: Iterable[tuple[int, int]]) -> None:
        self.done = merge(done)
        temp = self.path.with_name(self.path.name + ".tmp")
        temp.write_text(json.dumps({"image_id": self.image_id, "checksum": self.checksum,
                                    "size": self.size, "done": self.done}))
        os.replace(temp, self.path)




def subtract(start: int, end: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` not in ``done`` (merged, in order)."""
    left, pos = [], start
    for s, e in done:
        if e <= pos or s >= end:
            continue
        if s > pos:
            left.append((pos, s))
        pos = max(pos, e)
    if pos < end:
        left.append((pos, end))
    return left


def blocks(ranges: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """``ranges`` cut into blocks of at most ``size`` bytes."""
    return [(s, min(s + size, end)) for start, end in ranges for s in range(start, end, size)]

"""A stage written in parts, at any offset, by several requests at once.

The sequential stage (``streamd.io.staging``) grows at its end, one request at a time, and
hashes as it goes. A parallel stage instead takes each part where it belongs, so a client can
send an image over N connections, resend only what a cut connection lost, and declare a run of
zeros instead of sending it (oVirt imageio's ``PUT`` at an offset and ``PATCH zero``). Its
digests are computed once it is whole, by the import (``streamd.service.stage_parts``).

On disk, under the staging area's ``.parts/<image_id>/``:

- ``data``: the image, ``total`` bytes long from the first part on (a sparse file: what no
  part has written yet is a hole); a part's zero chunks are punched back into holes;
- ``total``: the image's size, set by the first part, which every part must repeat;
- ``marks/START-END``: one empty file per range that is durable (END exclusive). A part's
  bytes are ``fdatasync``-ed before its mark is made and the directory fsynced, so a mark
  never names bytes that a crash could lose. Parts from several processes (the server's
  workers) need no lock: each writes its own range and makes its own mark.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import BadRequest, Conflict
from streamd.io import posix
from streamd.io.errors import ObjectNotFound
from streamd.io.pipeline import ByteSource
from streamd.io.stores.base import check_key
from streamd.sparse import merge, punch_hole

PARTS_DIR = ".parts"  # a dot name: the sequential stage's scans pass over it


@dataclass(frozen=True)
class PartsState:
    """What a parallel stage holds: ``ranges`` staged (merged, ``(start, end)`` with END
    exclusive, in order) of a ``total``-byte image; ``modified``: its last change."""

    total: int
    ranges: tuple[tuple[int, int], ...]
    modified: float

    @property
    def staged(self) -> int:
        return sum(end - start for start, end in self.ranges)

    @property
    def prefix(self) -> int:
        """Bytes staged from offset 0 without a gap."""
        return self.ranges[0][1] if self.ranges and self.ranges[0][0] == 0 else 0

    @property
    def complete(self) -> bool:
        return self.ranges == ((0, self.total),)

    def missing(self) -> list[tuple[int, int]]:
        """The ranges not staged yet (END exclusive)."""
        gaps, pos = [], 0
        for start, end in self.ranges:
            if start > pos:
                gaps.append((pos, start))
            pos = end
        if pos < self.total:
            gaps.append((pos, self.total))
        return gaps


def format_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    """``0-1023,4096-8191``: as in ``Content-Range``, END inclusive."""
    return ",".join(f"{start}-{end - 1}" for start, end in ranges)


def not_whole(image_id: str, state: PartsState) -> Conflict:
    """The answer to an import of a parallel stage with a hole."""
    gaps = state.missing()
    return Conflict(
        f"Image needs to be staged before 'glance-direct' method can be used: {state.staged} "
        f"of {state.total} bytes of image {image_id} are staged; {len(gaps)} range(s) are "
        f"missing, the first bytes {gaps[0][0]}-{gaps[0][1] - 1}. HEAD …/stage lists what "
        "is staged (Upload-Ranges): stage the rest and import again."
    )


class StagedParts:
    """The parallel stages of one staging area, under ``root``."""

    def __init__(self, root: Path, calls: posix.BlockingCalls, *, chunk: int) -> None:
        self.root = root
        self._calls = calls
        self._chunk = chunk

    def _dir(self, image_id: str) -> Path:
        return self.root / check_key(image_id)

    async def begin(self, image_id: str, total: int) -> None:
        """Make the stage of a ``total``-byte image if there is none; BadRequest when one
        exists for another total."""
        await self._calls.io("write", _begin, self._dir(image_id), total)

    async def write(self, image_id: str, start: int, length: int, source: ByteSource) -> int:
        """Write ``length`` bytes of ``source`` at ``start`` and mark them staged; return
        how many arrived. When the source fails or is cut off, the bytes that did arrive
        are made durable and marked first (a resend starts after them), then it raises."""
        folder = self._dir(image_id)
        fd = await self._calls.io("write", os.open, folder / "data",
                                  os.O_WRONLY | os.O_CLOEXEC)
        buf = memoryview(bytearray(min(self._chunk, length)))
        done = 0
        try:
            while done < length:
                got = await source.readinto(buf[:min(len(buf), length - done)])
                if got == 0:
                    break
                await self._calls.io("write", _put, fd, buf[:got], start + done)
                done += got
            if await source.readinto(buf[:1]) != 0:
                raise BadRequest(f"The body is longer than the {length} bytes its "
                                 "Content-Range says.")
        finally:
            try:
                if done:
                    await self._calls.io("write", _mark, folder, fd, start, start + done)
            finally:
                os.close(fd)
        return done

    async def zero(self, image_id: str, start: int, length: int) -> None:
        """Stage ``length`` zeros at ``start`` (a hole) without receiving them."""
        folder = self._dir(image_id)

        def punch() -> None:
            fd = os.open(folder / "data", os.O_WRONLY | os.O_CLOEXEC)
            try:
                punch_hole(fd, start, length)
                _mark(folder, fd, start, start + length)
            finally:
                os.close(fd)

        await self._calls.io("write", punch)

    async def state(self, image_id: str) -> PartsState | None:
        """What is staged in parts for ``image_id``; None when nothing is."""
        return await self._calls.io("read", _state, self._dir(image_id))

    async def seal(self, image_id: str, dest: Path) -> PartsState:
        """Move the whole image to ``dest`` (the sequential stage's data file) and forget
        the parts; Conflict naming the missing ranges if it is not whole."""
        folder = self._dir(image_id)
        state = await self.state(image_id)
        if state is None:
            raise ObjectNotFound("nothing is staged in parts for this image")
        if not state.complete:
            raise not_whole(image_id, state)

        def move() -> None:
            os.replace(folder / "data", dest)
            posix.fsync_dir(dest.parent)
            shutil.rmtree(folder, ignore_errors=True)

        await self._calls.io("write", move)
        return state

    async def discard(self, image_id: str) -> None:
        """Remove the parallel stage of ``image_id``; none is not an error."""
        await self._calls.io("delete", shutil.rmtree, self._dir(image_id), True)

    async def stale(self, cutoff: float) -> list[str]:
        """Image ids whose parallel stage has not changed since ``cutoff``."""
        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted(name for name in os.listdir(self.root)
                          if (s := _state(self.root / name)) is None or s.modified < cutoff)

        return await self._calls.io("read", scan)


def _begin(folder: Path, total: int) -> None:
    marks = folder / "marks"
    if not marks.is_dir():
        marks.mkdir(parents=True, exist_ok=True)
        posix.fsync_dir(folder.parent)
    total_path = folder / "total"
    if not total_path.exists():
        fd = os.open(folder / "data", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, posix.FILE_MODE)
        try:
            if os.fstat(fd).st_size == 0:
                os.ftruncate(fd, total)  # all holes: what no part wrote reads as zeros
            os.fsync(fd)
        finally:
            os.close(fd)
        # two first parts at once: one wins, and the other never reads it half-written
        # (it read an empty file as "no total" and refused its part)
        draft = posix.temp_path(total_path)
        fd = posix.open_new(draft)
        try:
            posix.pwrite_all(fd, memoryview(str(total).encode()), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        posix.publish_if_absent(draft, total_path)
    recorded = _total(folder)
    if recorded != total:
        raise BadRequest(
            f"Content-Range says this image is {total} bytes long; its parallel stage was "
            f"started as {recorded} bytes. Send the same total, or delete the image."
        )


def _total(folder: Path) -> int | None:
    try:
        text = (folder / "total").read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.strip().isdigit() else None


def _put(fd: int, data: memoryview, offset: int) -> None:
    """Write a chunk; an all-zero one becomes a hole instead (an image is mostly zeros)."""
    if posix.is_zero(data):
        punch_hole(fd, offset, len(data))
    else:
        posix.pwrite_all(fd, data, offset)


def _mark(folder: Path, fd: int, start: int, end: int) -> None:
    """Make ``[start, end)`` durable, then record it as staged."""
    os.fdatasync(fd)
    marks = folder / "marks"
    os.close(os.open(marks / f"{start}-{end}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                     posix.FILE_MODE))
    posix.fsync_dir(marks)


def _state(folder: Path) -> PartsState | None:
    total = _total(folder)
    if total is None:
        return None
    ranges: list[tuple[int, int]] = []
    try:
        names = os.listdir(folder / "marks")
        modified = (folder / "marks").stat().st_mtime
    except FileNotFoundError:
        return None
    for name in names:
        start, _, end = name.partition("-")
        if start.isdigit() and end.isdigit():
            ranges.append((int(start), int(end)))
    return PartsState(total=total, ranges=tuple(merge(ranges)), modified=modified)

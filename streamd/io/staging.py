"""The staging area: image data staged for import, kept when an upload is cut off.

``PUT /v2/images/{id}/stage`` writes here rather than into the image store; an import
(glance-direct) later moves the data into the store. Unlike a store write, a stage is
resumable: whatever arrived before the client went away stays, and a later request appends
from there. Per image, in ``root``:

- ``<image_id>``: the bytes staged so far, always a prefix of the image, fsynced whenever a
  request ends, however it ends;
- ``<image_id>.json``: what the client said about the whole (``total`` bytes) and, once all
  of it is here, the digests computed while it was staged (``StagedDigests``).

Hasher state cannot be carried from one request to the next (``hashlib`` objects can be
copied but not saved), so a resumed stage streams the staged prefix back through the
pipeline's hashers ahead of the new bytes (``prefix``), and the writer (``appender``) skips
those bytes, which are on disk already. A resume costs one read of what was staged; in
exchange no hasher state is ever persisted, a crash cannot leave digests that disagree with
the bytes, and the digests are always those of the bytes on disk.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

from streamd.errors import RangeNotSatisfiable
from streamd.io import posix
from streamd.io.errors import ObjectNotFound, StoreError
from streamd.io.hashing import new_hasher
from streamd.io.inspection import DiskInspection
from streamd.io.stage_parts import PARTS_DIR, StagedParts
from streamd.io.stores.base import (
    Store,
    StoreCapabilities,
    StoredObject,
    can_link,
    check_key,
    check_range,
)

_META = ".json"


class StageOffsetMismatch(RangeNotSatisfiable):
    """A resume that does not start where the staged data ends. Retry at ``expected``."""

    def __init__(self, message: str, *, expected: int) -> None:
        super().__init__(message, headers={"Upload-Offset": str(expected)})
        self.expected = expected


@dataclass(frozen=True)
class StagedDigests:
    """The digests of a complete stage, computed while it was staged (lowercase hex)."""

    checksum: str
    os_hash_algo: str
    os_hash_value: str
    xxh3: str
    # what the format inspector found in the staged bytes (None: staged before streamd
    # inspected stages); the import judges it against the image's disk_format
    inspection: DiskInspection | None = None


@dataclass(frozen=True)
class Stage:
    """What is staged for one image."""

    size: int  # bytes staged so far
    total: int | None  # bytes in all, when the client has said
    digests: StagedDigests | None  # once complete
    modified: float  # seconds since the epoch of the last byte or record

    @property
    def complete(self) -> bool:
        return self.digests is not None


class StagingArea:
    """Staged image data under ``root`` (one data dir per server, like the file store)."""

    def __init__(
        self,
        root: Path,
        *,
        limiter: trio.CapacityLimiter | None = None,
        read_chunk: int = posix.READ_CHUNK,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self._calls = posix.BlockingCalls(limiter, "the staging area")
        self._read_chunk = read_chunk
        # the stages sent in parts, at any offset (streamd's parallel stage extension)
        self.parts = StagedParts(self.root / PARTS_DIR, self._calls, chunk=read_chunk)

    def __repr__(self) -> str:
        return f"StagingArea(root={str(self.root)!r})"

    def data_path(self, image_id: str) -> Path:
        return self.root / check_key(image_id)

    def _meta_path(self, image_id: str) -> Path:
        return self.root / f"{check_key(image_id)}{_META}"

    def location(self, image_id: str) -> str:
        """Where a stage's bytes are, in a store's terms (``StageAppender``'s location)."""
        return f"file://{self.data_path(image_id)}"

    # -- reading -------------------------------------------------------------------------------

    async def stage(self, image_id: str) -> Stage | None:
        """What is staged for ``image_id``; None when nothing is (not even an empty stage)."""
        return await self._calls.io("read", _read_stage, self.data_path(image_id),
                                    self._meta_path(image_id))

    @asynccontextmanager
    async def prefix(self, image_id: str, length: int) -> AsyncIterator[_StagedRange]:
        """The first ``length`` staged bytes as a ``ByteSource`` (to hash them again)."""
        source = _StagedRange(self.data_path(image_id), 0, length, self._calls)
        try:
            yield source
        finally:
            source.close()

    async def read(
        self, image_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview]:
        """Yield the staged bytes ``[offset, offset + length)`` from one reused buffer (a
        store's ``read``: the buffer is overwritten once the next chunk is asked for)."""
        length = check_range(offset, length, await self._size(image_id))
        source = _StagedRange(self.data_path(image_id), offset, length, self._calls)
        try:
            buf = memoryview(bytearray(min(length, self._read_chunk)))
            while got := await source.readinto(buf):
                yield buf[:got]
        finally:
            source.close()

    async def stale(self, *, older_than: float, now: float | None = None) -> list[str]:
        """Image ids whose stage has not changed for ``older_than`` seconds (and orphaned
        records of a stage whose data is gone)."""
        cutoff = (time.time() if now is None else now) - older_than
        stale = await self._calls.io("read", _stale, self.root, cutoff)
        return sorted({*stale, *await self.parts.stale(cutoff)})

    async def _size(self, image_id: str) -> int:
        try:
            return await self._calls.run(os.path.getsize, self.data_path(image_id))
        except FileNotFoundError:
            raise ObjectNotFound("nothing is staged for this image") from None
        except OSError as exc:
            raise self._calls.failure(exc, "read") from exc

    # -- writing -------------------------------------------------------------------------------

    def appender(self, image_id: str, offset: int) -> StageAppender:
        """A one-shot ``Store`` for ``store_stream`` that appends to the stage at ``offset``."""
        return StageAppender(self, image_id, offset, self._calls)

    async def record(self, image_id: str, *, total: int | None,
                     digests: StagedDigests | None = None) -> None:
        """Write what is known about the whole: ``total`` and, once complete, ``digests``."""
        meta: dict[str, Any] = {"total": total, "digests": None}
        if digests is not None:
            inspection = digests.inspection
            meta["digests"] = {**asdict(digests),
                               "inspection": inspection and inspection.to_json()}
        await self._calls.io("write", posix.write_atomically, self._meta_path(image_id),
                             json.dumps(meta).encode())

    async def discard(self, image_id: str) -> None:
        """Remove the stage of ``image_id`` (sequential or in parts); nothing staged is
        not an error."""
        def remove() -> None:
            self.data_path(image_id).unlink(missing_ok=True)
            self._meta_path(image_id).unlink(missing_ok=True)

        await self._calls.io("delete", remove)
        await self.parts.discard(image_id)

    async def reap_temp_files(self) -> int:
        """Remove the temp files of records interrupted by a crash (call at start-up)."""
        return await self._calls.run(posix.reap_temp_files, self.root, time.time())

    async def move_into(self, store: Store, image_id: str, digests: StagedDigests) -> StoredObject:
        """Make the complete stage of ``image_id`` the store's object ``image_id``.

        A hard link when the store can take one (``capabilities.hard_links``, and the stage
        on the same file system): no byte is copied. Otherwise a streamed copy, checked
        against the xxh3 computed while staging. The stage itself stays until ``discard``:
        until the registry has recorded the object, a failure can still go back to it.
        """
        path = self.data_path(image_id)
        if can_link(store):
            linked = await store.link_from(path, key=image_id)
            if linked is not None:
                return linked
        size = await self._size(image_id)
        source = _StagedRange(path, 0, size, self._calls)
        try:
            chunks = _Verified(source, min(size, self._read_chunk), digests.xxh3)
            return await store.write(chunks, key=image_id, size=size)
        finally:
            source.close()


class StageAppender:
    """The stage of one image as a one-shot ``Store``: ``store_stream`` writes through it.

    The stream starts at byte 0; its first ``offset`` bytes are the staged prefix read back
    for hashing and are skipped. Whatever ends the write — the end of the data, an error, a
    cancellation — the file is left holding exactly the bytes written before it, fsynced:
    nothing is ever removed here (``delete`` does nothing; the staging area decides).
    ``end`` is the size of the stage afterwards.
    """

    name = "staging"
    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=True, max_readers=None, max_writers=1
    )

    def __init__(
        self, area: StagingArea, image_id: str, offset: int, calls: posix.BlockingCalls
    ) -> None:
        self._area = area
        self._image_id = image_id
        self._offset = offset
        self._calls = calls
        self.end = offset

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        path = self._area.data_path(self._image_id)
        fd = await self._calls.io("write", _open_at, path, self._offset)
        pos = 0
        failed = True
        try:
            async for chunk in chunks:
                end = pos + len(chunk)
                if end > self._offset:
                    start = max(pos, self._offset)
                    data = chunk[start - pos:]
                    if not posix.is_zero(data):  # zeros: a hole, the final ftruncate fills it
                        await self._calls.io("write", posix.pwrite_all, fd, data, start)
                    self.end = end
                pos = end
            failed = False
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._calls.io("write", _finish, fd, self.end)
                except StoreError:
                    if not failed:
                        raise
        return StoredObject(location=self._area.location(self._image_id), size=pos)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview]:
        self._check(location)
        async with aclosing(self._area.read(self._image_id, offset, length)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def delete(self, location: str) -> None:
        """Nothing: a stage keeps what was written (see the class)."""

    async def stat(self, location: str) -> int:
        self._check(location)
        stage = await self._area.stage(self._image_id)
        if stage is None:
            raise ObjectNotFound("nothing is staged for this image")
        return stage.size

    async def aclose(self) -> None:
        """Nothing to release."""

    def _check(self, location: str) -> None:
        if location != self._area.location(self._image_id):
            raise ObjectNotFound("no such image data in the staging area")


class _StagedRange:
    """Bytes ``[offset, offset + length)`` of a staged file, as a ``ByteSource``.

    The file is opened on the first read that needs it (a prefix of 0 bytes never does:
    a first stage has no file yet); ``close`` is always safe.
    """

    def __init__(self, path: Path, offset: int, length: int, calls: posix.BlockingCalls) -> None:
        self._path = path
        self._pos = offset
        self._remaining = length
        self._calls = calls
        self._fd: int | None = None

    async def readinto(self, buf: memoryview) -> int:
        if self._remaining == 0:
            self.close()
            return 0
        if self._fd is None:
            self._fd = await self._calls.io("read", os.open, self._path,
                                            os.O_RDONLY | os.O_CLOEXEC)
        # a stage may be mostly holes (zero parts, sparse uploads): those are not read
        n = await self._calls.io("read", posix.pread_sparse, self._fd,
                                 buf[:min(len(buf), self._remaining)], self._pos)
        if n == 0:
            raise StoreError("the staged data is shorter than recorded; stage it again")
        self._pos += n
        self._remaining -= n
        return n

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Verified:
    """A staged range as a store's ``chunks``, read into one buffer of ``chunk`` bytes;
    their xxh3 must equal ``expected`` at the end (the bytes have not changed since)."""

    def __init__(self, source: _StagedRange, chunk: int, expected: str) -> None:
        self._source = source
        self._buf = memoryview(bytearray(chunk))
        self._expected = expected
        self._hasher = new_hasher("xxh3_128")

    def __aiter__(self) -> _Verified:
        return self

    async def __anext__(self) -> memoryview:
        got = await self._source.readinto(self._buf)
        if got == 0:
            if self._hasher.hexdigest() != self._expected:
                raise StoreError("the staged data changed after it was staged; stage it "
                                 "again")
            raise StopAsyncIteration
        chunk = self._buf[:got]
        self._hasher.update(chunk)
        return chunk


def _read_stage(data: Path, meta_path: Path) -> Stage | None:
    try:
        st = data.stat()
    except FileNotFoundError:
        return None
    modified = st.st_mtime
    meta: dict[str, Any] = {}
    try:
        meta = json.loads(meta_path.read_bytes())
        modified = max(modified, meta_path.stat().st_mtime)
    except FileNotFoundError:
        pass
    except ValueError:
        meta = {}  # a torn record: what the client said is unknown, the bytes still count
    total = meta.get("total")
    digests = meta.get("digests")
    complete = digests is not None and total == st.st_size
    return Stage(
        size=st.st_size,
        total=total if isinstance(total, int) else None,
        digests=_digests(digests) if complete else None,
        modified=modified,
    )


def _digests(recorded: dict[str, Any]) -> StagedDigests:
    inspection = recorded.pop("inspection", None)
    return StagedDigests(**recorded, inspection=inspection and DiskInspection.from_json(inspection))


def _stale(root: Path, cutoff: float) -> list[str]:
    """Image ids with a data file or record last changed before ``cutoff``."""
    newest: dict[str, float] = {}
    for entry in os.scandir(root):
        name = entry.name
        if name.startswith("."):
            continue  # temp files: reap_temp_files
        image_id = name.removesuffix(_META)
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        newest[image_id] = max(newest.get(image_id, mtime), mtime)
    return sorted(i for i, mtime in newest.items() if mtime < cutoff)


def _open_at(path: Path, offset: int) -> int:
    """Open the stage for writing; it must hold exactly ``offset`` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, posix.FILE_MODE)
    try:
        size = os.fstat(fd).st_size
        if size != offset:
            raise StageOffsetMismatch(
                f"{size} bytes are staged: resume at offset {size}, not {offset}",
                expected=size,
            )
        return fd
    except BaseException:
        os.close(fd)
        raise


def _finish(fd: int, size: int) -> None:
    """Cut the file to the bytes written (a skipped zero tail is extended), fsync, close."""
    try:
        posix.truncate_and_sync(fd, size)
    finally:
        os.close(fd)

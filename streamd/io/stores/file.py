"""The file store: one file per image in a local directory, written sparse and atomically.

An upload goes to a temp file ``.<key>.<random>.tmp`` next to its final name, so a partial
upload never looks complete and a crash leaves only temp names (``reap_temp_files``). The
commit is ``ftruncate`` (zero tails were skipped), ``fsync``, ``rename`` and ``fsync`` of
the directory: once ``write`` returns, the object survives a power cut.

All-zero runs are skipped by seeking, so a 1 GiB zero image takes no blocks. Detecting them
costs little: ``bytes.startswith`` against a zero buffer is one ``memcmp`` (~37 µs/MiB of
zeros, ~0.2 µs on data, which differs in the first bytes); note that ``memoryview ==
bytes`` compares item by item and is 60× slower.

Blocking syscalls run in worker threads (``trio.to_thread.run_sync``), bounded by an
optional ``CapacityLimiter``; a read the page cache can answer at once runs in the event
loop instead (``RWF_NOWAIT``), since the hop to a thread costs more than the read itself.

Aligned writes bypass the page cache (``O_DIRECT``, see ``_TempFile``); for what does not,
writeback starts while the upload runs: every ``WRITEBACK`` bytes written, Linux's
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues them for the disk without waiting, so the
commit's ``fsync`` finds little left to do (1 GiB buffered at ~300 MiB/s on this 2-core VM:
the final fsync took 1.75 s without it, 0.03 s with it). Elsewhere it is skipped.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import signal
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

import trio

from streamd.io.errors import ObjectNotFound, StoreError, StoreFull
from streamd.io.stores.base import (
    StoreCapabilities,
    StoredObject,
    check_key,
    check_range,
)
from streamd.io.threads import BlockingCalls
from streamd.units import KiB, MiB

# bytes per read: 8 warm 1 GiB downloads at once (bench load client) ran 2,084-2,294 MiB/s
# at 512 KiB against 2,014-2,084 at 1 MiB, with ~10 MiB less peak RSS (the response's
# buffer and hypercorn's copy of it); 256 KiB: 1,944
READ_CHUNK = 512 * KiB
# holes are found at this granularity inside a chunk: a multiple of any file system block
# and qcow2's default cluster size, so a converted image's unused clusters become holes
SPARSE_BLOCK = 64 * KiB
_ZEROS = bytes(1 * MiB)  # compared against whole chunks a slice at a time
# written bytes handed to the disk at a time: enough for large requests, small enough that
# the disk works alongside the upload instead of after it (dirty pages are not RSS)
WRITEBACK = 8 * MiB
# errno values that mean "no room", not "broken": the client may retry once space is freed.
# EFBIG is what RLIMIT_FSIZE gives once SIGXFSZ is ignored (see ignore_sigxfsz).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# link errors that mean "not here, copy instead": another file system, no links on this one,
# or too many links to the file already
_NO_LINK_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux >= 4.14
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
# what O_DIRECT asks of a write's address, offset and length: a page covers every logical
# block size in use; the transfer buffers (``streamd.io.buffers``) are page-aligned
DIRECT_ALIGN = 4 * KiB


def ignore_sigxfsz() -> None:
    """Make a write past ``RLIMIT_FSIZE`` fail with EFBIG instead of killing the process.

    The default action of SIGXFSZ is to terminate; a server wants one failed upload (507)
    instead. Call once at start-up, from the main thread.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux only; Python does not wrap it), or None."""
    try:
        fn = ctypes.CDLL(None).sync_file_range
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_SYNC_FILE_RANGE = _find_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range; do not wait


def is_zero(data: memoryview) -> bool:
    """True if every byte of ``data`` is zero (one ``memcmp`` per MiB)."""
    step = len(_ZEROS)
    return all(_ZEROS.startswith(data[i : i + step]) for i in range(0, len(data), step))


def _store_failure(exc: OSError, action: str) -> StoreError | StoreFull:
    if exc.errno in _FULL_ERRNOS:
        return StoreFull("the image store is out of space; retry once space has been freed")
    return StoreError(f"the image store failed to {action} the image data; retry later")


class FileStore:
    """Images as files ``<root>/<key>``; location ``file://<absolute path>``."""

    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=True, max_readers=None, max_writers=None,
        hard_links=True,
    )

    def __init__(
        self,
        root: Path,
        name: str = "file",
        *,
        limiter: trio.CapacityLimiter | None = None,
        read_chunk: int = READ_CHUNK,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.name = name
        self._calls = BlockingCalls(limiter, _store_failure)
        self._read_chunk = read_chunk
        self._writing: set[str] = set()  # temp names of writes in progress, kept from reaping

    def __repr__(self) -> str:
        return f"FileStore(name={self.name!r}, root={str(self.root)!r})"

    def _path(self, location: str) -> Path:
        """The file behind ``location``; a location outside this store names no object here."""
        if location.startswith("file://"):
            path = Path(location.removeprefix("file://"))
            if path.is_absolute() and path.parent == self.root:
                try:
                    return self.root / check_key(path.name)
                except ValueError:
                    pass
        raise ObjectNotFound(f"no such image data in store {self.name!r}")

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Write ``chunks`` sparse into a temp file, then commit it as ``<key>``.

        ``size`` is not needed: a file grows as it is written.
        """
        final = self.root / check_key(key)
        temp = _TempFile(self.root / f".{key}.{secrets.token_hex(8)}.tmp")
        await self._calls.io("write", temp.create)
        self._writing.add(temp.path.name)
        written = 0
        try:
            async for chunk in chunks:
                if not is_zero(chunk):  # zeros: leave a hole, no thread hop
                    await self._calls.io("write", temp.write, chunk, written)
                written += len(chunk)
            await self._calls.io("write", temp.commit, written, final)
        except BaseException:
            with trio.CancelScope(shield=True):
                try:
                    await self._calls.run(temp.discard)
                except OSError:
                    pass  # keep the original error; reap_temp_files removes the leftover
            raise
        finally:
            self._writing.discard(temp.path.name)
        return StoredObject(location=f"file://{final}", size=written)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview]:
        """Yield the range from one buffer per call, refilled in place for each chunk."""
        path = self._path(location)
        try:
            fd, size = await self._calls.run(_open_for_read, path)
        except FileNotFoundError:
            raise ObjectNotFound(f"no such image data in store {self.name!r}") from None
        except OSError as exc:
            raise _store_failure(exc, "read") from exc
        try:
            remaining = check_range(offset, length, size)
            if remaining == 0:
                return
            buf = memoryview(bytearray(min(remaining, self._read_chunk)))
            while remaining:
                want = min(remaining, len(buf))
                got = _read_cached(fd, buf[:want], offset)
                if got is None:  # not (all) in the page cache: the disk may block, use a thread
                    got = await self._calls.io("read", os.preadv, fd, [buf[:want]], offset)
                else:
                    await trio.lowlevel.checkpoint()  # a cached read never yields otherwise
                if got == 0:
                    raise StoreError(f"image data in store {self.name!r} is shorter than recorded")
                yield buf[:got]
                offset += got
                remaining -= got
        finally:
            os.close(fd)  # never blocks on a local file; must run even when cancelled

    async def delete(self, location: str) -> None:
        """Unlink the file; a missing file is already deleted."""
        path = self._path(location)
        await self._calls.io("delete", path.unlink, True)  # missing_ok

    async def stat(self, location: str) -> int:
        """Return the file's size (its apparent size, holes included)."""
        path = self._path(location)
        try:
            return (await self._calls.run(path.stat)).st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no such image data in store {self.name!r}") from None
        except OSError as exc:
            raise _store_failure(exc, "read") from exc

    async def aclose(self) -> None:
        """Nothing to release: no file stays open between calls."""

    async def link_from(self, path: Path, *, key: str) -> StoredObject | None:
        """Make the complete file ``path`` the object ``key`` by a hard link (``LinkingStore``).

        A hard link under a temp name, renamed over ``<key>`` (an object already there is
        replaced), then the directory is fsynced: the caller's own name stays. None when
        ``path`` is on another file system (or links are refused there): copy it.
        """
        final = self.root / check_key(key)
        temp = self.root / f".{key}.{secrets.token_hex(8)}.tmp"

        def link() -> int | None:
            try:
                os.link(path, temp)
            except OSError as exc:
                if exc.errno in _NO_LINK_ERRNOS:
                    return None
                raise
            try:
                os.rename(temp, final)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            # rename() does nothing when both names are links to one file (``final`` was
            # linked from ``path`` before, e.g. a retried import): the temp name is still there
            temp.unlink(missing_ok=True)
            _fsync_dir(self.root)
            return final.stat().st_size

        size = await self._calls.io("write", link)
        if size is None:
            return None
        return StoredObject(location=f"file://{final}", size=size)

    async def reap_temp_files(self, older_than: float, *, now: float | None = None) -> int:
        """Remove temp files left by a crash; return how many were removed.

        Writes in progress in this process are skipped. Other processes' writes are told
        apart only by age (``mtime``, seconds): skipped zero runs do not touch it, so pass
        an ``older_than`` longer than any upload may stall, or 0 at start-up before serving.
        """
        cutoff = (time.time() if now is None else now) - older_than
        return await self._calls.run(_reap, self.root, cutoff, frozenset(self._writing))


class _TempFile:
    """The file an upload is written to; its methods block and run in worker threads.

    Aligned runs go through a second descriptor opened with ``O_DIRECT``: straight from the
    transfer's buffer to the disk, no copy into the page cache. On this VM that copy was
    most of an upload's cost once the hashes run beside it (buffered 1 GiB: 0.17 s of CPU
    into recycled pages, 1–2.5 s into pages the guest touches for the first time; direct:
    0.08 s), and a multi-GB upload no longer pushes hot images out of the cache. The rest
    (a short tail, a caller's unaligned buffer) and file systems without ``O_DIRECT`` use
    the plain descriptor; one ``fsync`` covers both.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.direct_fd: int | None = None
        self._flushed = 0  # buffered bytes before this offset have been handed to the disk
        self._dirty = False  # buffered bytes written since the last writeback hint

    def create(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o640)
        if _O_DIRECT:
            try:
                self.direct_fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC | _O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this file system has no O_DIRECT
                    raise

    def write(self, data: memoryview, offset: int) -> None:
        """Write ``data`` at ``offset``, leaving holes for its all-zero ``SPARSE_BLOCK``s."""
        start = None  # first byte of the data run being collected
        for pos in range(0, len(data), SPARSE_BLOCK):
            if _ZEROS.startswith(data[pos : pos + SPARSE_BLOCK]):
                if start is not None:
                    self._write_all(data[start:pos], offset + start)
                    start = None
            elif start is None:
                start = pos
        if start is not None:
            self._write_all(data[start:], offset + start)
        end = offset + len(data)
        if self._dirty and _SYNC_FILE_RANGE is not None and end - self._flushed >= WRITEBACK:
            assert self.fd is not None
            # a hint: an error here shows again, and is raised, at the commit's fsync
            _SYNC_FILE_RANGE(self.fd, self._flushed, end - self._flushed, _SYNC_FILE_RANGE_WRITE)
            self._flushed = end
            self._dirty = False

    def _write_all(self, data: memoryview, offset: int) -> None:
        assert self.fd is not None
        if self.direct_fd is not None and _aligned(data, offset):
            try:
                self._pwrite_all(self.direct_fd, data, offset)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # the file system wants a larger alignment than DIRECT_ALIGN: stop trying
                os.close(self.direct_fd)
                self.direct_fd = None
        self._pwrite_all(self.fd, data, offset)
        self._dirty = True

    @staticmethod
    def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(fd, data, offset)
            data = data[written:]
            offset += written

    def commit(self, size: int, final: Path) -> None:
        """Make the file durable under its final name; on failure leave no final name."""
        assert self.fd is not None
        os.ftruncate(self.fd, size)  # the tail may be a skipped zero run
        os.fsync(self.fd)
        self.close()
        os.rename(self.path, final)
        try:
            _fsync_dir(final.parent)
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        # forget first: a closed fd number may be reused at once
        direct_fd, self.direct_fd = self.direct_fd, None
        fd, self.fd = self.fd, None
        try:
            if direct_fd is not None:
                os.close(direct_fd)
        finally:
            if fd is not None:
                os.close(fd)

    def discard(self) -> None:
        """Close and remove the temp file, whatever state the write stopped in."""
        try:
            self.close()
        except OSError:
            pass  # the data is being thrown away; a deferred write error does not matter
        self.path.unlink(missing_ok=True)


def _aligned(data: memoryview, offset: int) -> bool:
    """Can ``data`` be written at ``offset`` with O_DIRECT (address, offset, length)?"""
    if offset % DIRECT_ALIGN or len(data) % DIRECT_ALIGN or data.readonly:
        return False
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(data))
    except (TypeError, ValueError):  # not contiguous, or empty
        return False
    return address % DIRECT_ALIGN == 0


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_cached(fd: int, view: memoryview, offset: int) -> int | None:
    """Read ``view`` from the page cache without blocking, or return None.

    ``RWF_NOWAIT`` makes ``preadv2`` fail with ``EAGAIN`` instead of waiting for the disk,
    so a cached read (a hot image, one just uploaded) runs right in the event loop: no
    thread hop, which is most of a download's per-chunk cost. A read only partly cached
    answers what it has, or None for the thread to read it all.
    """
    if _RWF_NOWAIT is None:
        return None
    try:
        got = os.preadv(fd, [view], offset, _RWF_NOWAIT)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise _store_failure(exc, "read") from exc
    return got or None  # 0: end of file, or nothing cached; the thread tells them apart


def _open_for_read(path: Path) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def _reap(root: Path, cutoff: float, active: frozenset[str]) -> int:
    removed = 0
    for entry in os.scandir(root):
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")) or name in active:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass  # finished or reaped meanwhile
    return removed

"""Local files, the POSIX way: the one place for what the file store and the staging area share.

Both keep image data in plain files in one directory, and both need the same few things
done the same way:

- **Errors.** An ``OSError`` becomes the data plane's own error: ``StoreFull`` when the
  errno means "no room" (the client may retry once space is freed), ``StoreError`` for
  anything else, with a message that names the area ("the image store", "the staging area")
  but never a path. ``BlockingCalls`` runs the blocking calls in worker threads and maps
  their errors in one go.
- **Writing.** ``pwrite_all`` (``pwrite`` may write less than asked), holes for zero runs
  (``is_zero``), and the commit that makes a file appear only when complete: data to a temp
  name next to the final one (``temp_path``), ``fsync``, ``rename`` over the final name,
  ``fsync`` of the directory (``publish``). A crash leaves only temp names, which
  ``reap_temp_files`` removes.
- **Reading.** A read the page cache can answer runs in the event loop (``read_cached``);
  the rest goes to a worker thread (``BlockingCalls.pread``). A bulk read of a file that
  may have holes takes ``pread_sparse``, which fills holes from memory.
- **Links.** A hard link made durable the same way (``link_into``), or ``None`` where the
  file system cannot link (another device, no link support): the caller copies instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from streamd.io.errors import StoreError, StoreFull
from streamd.units import KiB, MiB

_T = TypeVar("_T")

# bytes per read of a local file: 8 warm 1 GiB downloads at once (bench load client) ran
# 2,084-2,294 MiB/s at 512 KiB against 2,014-2,084 at 1 MiB, with ~10 MiB less peak RSS (the
# response's buffer and hypercorn's copy of it); 256 KiB: 1,944
READ_CHUNK = 512 * KiB
FILE_MODE = 0o640  # the owner writes, its group may read, others see no image data
# errno values that mean "no room", not "broken": the client may retry once space is freed.
# EFBIG is what RLIMIT_FSIZE gives once SIGXFSZ is ignored (see ignore_sigxfsz).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# link errors that mean "not here, copy instead": another file system, no links on this one,
# or too many links to the file already
NO_LINK_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})
# preadv2(RWF_NOWAIT) errors that mean "not without waiting" or "not on this file": use a thread
_NOT_CACHED_ERRNOS = frozenset({errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL})
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux >= 4.14
ZEROS = bytes(1 * MiB)  # compared against data a slice at a time: one memcmp per MiB
_TEMP_SUFFIX = ".tmp"


def ignore_sigxfsz() -> None:
    """Make a write past ``RLIMIT_FSIZE`` fail with EFBIG instead of killing the process.

    The default action of SIGXFSZ is to terminate; a server wants one failed upload (507)
    instead. Call once at start-up, from the main thread.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def store_failure(exc: OSError, action: str, where: str) -> StoreError | StoreFull:
    """The error to raise for ``exc`` during ``action`` ("read", "write", "delete") in
    ``where`` ("the image store"): ``StoreFull`` for lack of space, else ``StoreError``."""
    if exc.errno in FULL_ERRNOS:
        return StoreFull(f"{where} is out of space; retry once space has been freed")
    return StoreError(f"{where} failed to {action} the image data; retry later")


class BlockingCalls:
    """Blocking file calls of one area (``where``), run in worker threads under ``limiter``.

    ``run`` only moves the call to a thread; ``io`` also turns its ``OSError`` into a
    ``StoreFull``/``StoreError`` (``store_failure``), for the calls whose every ``OSError``
    is a failure of the area (as opposed to, say, ``FileNotFoundError`` meaning "no object").
    """

    def __init__(self, limiter: trio.CapacityLimiter | None, where: str) -> None:
        self.limiter = limiter
        self.where = where

    def failure(self, exc: OSError, action: str) -> StoreError | StoreFull:
        """``store_failure`` for this area."""
        return store_failure(exc, action, self.where)

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def io(self, action: str, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await self.run(fn, *args)
        except OSError as exc:
            raise self.failure(exc, action) from exc

    async def pread(self, fd: int, view: memoryview, offset: int) -> int:
        """Read into ``view`` at ``offset``: in the event loop when the page cache has the
        bytes, else in a worker thread. Returns the count read (0 at the end of the file)."""
        try:
            got = read_cached(fd, view, offset)
        except OSError as exc:
            raise self.failure(exc, "read") from exc
        if got is None:  # not (all) in the page cache: the disk may block, use a thread
            return await self.io("read", os.preadv, fd, [view], offset)
        await trio.lowlevel.checkpoint()  # a cached read never yields otherwise
        return got


def open_for_read(path: Path) -> tuple[int, int]:
    """Open ``path`` for reading; return the descriptor and the file's size."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def pread_sparse(fd: int, view: memoryview, offset: int) -> int:
    """``preadv`` that does not read holes: where ``offset`` is in one, the zeros are written
    into ``view`` from memory (up to the next data or the end of the file). Blocking.

    Reading a hole makes the kernel fill page-cache pages with zeros: sealing a 10 GiB
    stage holding 1 GiB of data read 9 GiB of them, which pushed everything else out of
    the page cache and spent seconds of system time in reclaim."""
    try:
        data = os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: no data at or after offset
            raise
        data = os.fstat(fd).st_size
        if data <= offset:
            return 0  # the end of the file
    if data <= offset:  # data here: read it, but not past it into the next hole
        hole = os.lseek(fd, offset, os.SEEK_HOLE)
        return os.preadv(fd, [view[:max(1, min(len(view), hole - offset))]], offset)
    n = min(len(view), data - offset)
    zeros = memoryview(ZEROS)
    for pos in range(0, n, len(zeros)):
        piece = min(len(zeros), n - pos)
        view[pos:pos + piece] = zeros[:piece]
    return n


def read_cached(fd: int, view: memoryview, offset: int) -> int | None:
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
        if exc.errno in _NOT_CACHED_ERRNOS:
            return None
        raise
    return got or None  # 0: end of file, or nothing cached; the thread tells them apart


def byte_cached(fd: int, offset: int) -> bool:
    """Whether the byte at ``offset`` is in the page cache (a 1-byte ``read_cached``):
    what decides, without touching the disk, that a range need not be read ahead or may be
    sent from the event loop. False past the end, where ``RWF_NOWAIT`` is missing, and on
    any error."""
    try:
        return bool(read_cached(fd, memoryview(bytearray(1)), offset))
    except OSError:
        return False


def range_cached(fd: int, offset: int, length: int) -> bool:
    """Whether the first and last bytes of ``[offset, offset + length)`` are in the page
    cache: then the range most likely is (pages between may have been evicted on their
    own; that costs one slow call, not a wrong byte), and a ``sendfile`` of it will not
    wait for the disk page by page. False for an empty range."""
    return length > 0 and byte_cached(fd, offset) and byte_cached(fd, offset + length - 1)


def is_zero(data: memoryview) -> bool:
    """True if every byte of ``data`` is zero (one ``memcmp`` per MiB).

    ``bytes.startswith`` against a zero buffer costs ~37 µs/MiB of zeros and ~0.2 µs on
    data, which differs in the first bytes; ``memoryview == bytes`` compares item by item
    and is 60× slower.
    """
    step = len(ZEROS)
    return all(ZEROS.startswith(data[i : i + step]) for i in range(0, len(data), step))


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: ``pwrite`` may write less than it was given."""
    while data:
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


def open_new(path: Path, flags: int = 0) -> int:
    """Create ``path`` for writing (never an existing file: ``O_EXCL``); ``flags`` are added."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | flags, FILE_MODE)


def only_descriptor(fd: int) -> bool:
    """Is ``fd`` the one open descriptor of its file, in any process? A write lease is
    granted only then (``fcntl(2)``); it is released at once. False where leases are off
    (``fs.leases-enable``) or unsupported."""
    setlease = getattr(fcntl, "F_SETLEASE", None)  # Linux only
    if setlease is None:
        return False
    try:
        fcntl.fcntl(fd, setlease, fcntl.F_WRLCK)
    except OSError:
        return False
    fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
    return True


def temp_path(final: Path) -> Path:
    """A fresh temp name for a file that will become ``final``: hidden, in the same
    directory (so the commit is a rename), and unique (concurrent writes of one name)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """Is ``name`` one that ``temp_path`` makes?"""
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def truncate_and_sync(fd: int, size: int) -> None:
    """Cut the file to ``size`` bytes (extending a skipped zero tail as a hole) and fsync."""
    os.ftruncate(fd, size)
    os.fsync(fd)


def publish(temp: Path, final: Path) -> None:
    """Rename the complete, fsynced ``temp`` over ``final`` and make the rename durable.

    When this returns, ``final`` survives a power cut; when it raises, neither name is left
    (a rename that cannot be made durable is undone), so a half-done commit never shows.
    """
    try:
        os.rename(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    try:
        fsync_dir(final.parent)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def publish_if_absent(temp: Path, final: Path) -> bool:
    """Give the complete, fsynced ``temp`` the name ``final`` unless a file has it already
    (the first of several writers wins, and a reader sees a whole file or none); ``temp``
    is gone either way. True if this one won."""
    try:
        os.link(temp, final)
        won = True
    except FileExistsError:
        won = False
    finally:
        temp.unlink(missing_ok=True)
    if won:
        fsync_dir(final.parent)
    return won


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename, a new link) durable."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``, all at once and durably (small files)."""
    temp = temp_path(path)
    fd = open_new(temp)
    try:
        try:
            pwrite_all(fd, memoryview(data), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    publish(temp, path)


def link_into(source: Path, final: Path) -> int | None:
    """Make ``final`` a hard link to the complete file ``source``; return its size.

    A link under a temp name, published over ``final`` (a file already there is replaced):
    no byte is copied, and ``source`` keeps its own name. None when this file system cannot
    link ``source`` there (``NO_LINK_ERRNOS``): the caller copies instead. Other failures
    raise ``OSError``.
    """
    temp = temp_path(final)
    try:
        os.link(source, temp)
    except OSError as exc:
        if exc.errno in NO_LINK_ERRNOS:
            return None
        raise
    publish(temp, final)
    # rename() does nothing when both names are links to one file (``final`` was linked
    # from ``source`` before, e.g. a retried import): then the temp name is still there
    temp.unlink(missing_ok=True)
    return final.stat().st_size


def reap_temp_files(root: Path, cutoff: float, active: frozenset[str] = frozenset()) -> int:
    """Remove the temp files in ``root`` last modified before ``cutoff`` (seconds since the
    epoch), except the names in ``active``; return how many were removed."""
    removed = 0
    for entry in os.scandir(root):
        name = entry.name
        if not is_temp_name(name) or name in active:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass  # finished or reaped meanwhile
    return removed

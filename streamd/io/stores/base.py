"""What a store is: the one protocol every backend (file, memory, Swift, S3, HTTP) implements.

A store keeps whole objects of bytes. It names them itself: ``write`` takes the image id as a
*key* and answers with a *location* (``file:///…``, ``swift://…``, ``s3://…``) that the registry
records and later hands back to ``read``, ``stat`` and ``delete``. Capabilities tell callers,
and ``/v2/info/stores``, what a store can do instead of letting them find out by failing:
callers ask ``capabilities``, never ``hasattr``. What only some stores can do has its own
protocol (``LinkingStore``, ``LocalFileStore``, ``SweepingStore``), reached through the
capability (``can_link``, ``has_local_files``, ``can_sweep``).

Errors, for every store and every call: ``ObjectNotFound`` (no object at that location),
``StoreFull`` (no room: retry once space is freed), ``StoreError`` (the store failed, perhaps
for a while: retry). A store turns its OS or client-library errors into these, with messages
for the API user (no paths, URLs or credentials; the original error as ``__cause__``).
Every call may be cancelled, and a cancelled ``write`` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard

from streamd.io import posix
from streamd.io.errors import ObjectNotFound

# 255 is NAME_MAX on Linux; the file store adds a prefix and a suffix for its temp name
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredObject:
    """A complete object: where it is and how many bytes it holds."""

    location: str
    size: int


@dataclass(frozen=True, kw_only=True)
class StoreCapabilities:
    """What a store can do, declared so callers plan for it rather than discover it.

    ``ranged_reads``: ``read`` fetches only the bytes asked for (no read-and-discard); a
    store without it still answers ranges, at the cost of reading from the start.
    ``sparse_writes``: all-zero runs cost no space. ``max_readers``/``max_writers``: how
    many transfers the store can take at once (``None``: no limit of its own).
    ``hard_links``: the store is a ``LinkingStore`` (``link_from`` takes a local file in
    without copying it). ``read_only``: ``write`` and ``delete`` are refused (e.g. the HTTP
    store, whose locations are URLs that someone else wrote). ``sweeps``: the store is a
    ``SweepingStore`` (a write cut off with its process, which could not clean up, leaves
    pieces in it that ``discard_unfinished`` finds by key: Swift segments, S3 multipart
    uploads). ``local_files``: the store is a ``LocalFileStore`` (an object is a complete file
    on this machine that ``open_file`` opens, so a download can go out with ``os.sendfile``
    straight from the page cache). A wrapper that must see every byte (a throttle) does not
    pass it on.

    A wrapper store declares what it passes on (usually its inner store's capabilities).
    """

    ranged_reads: bool
    sparse_writes: bool
    max_readers: int | None
    max_writers: int | None
    hard_links: bool = False
    read_only: bool = False
    sweeps: bool = False
    local_files: bool = False


class Store(Protocol):
    """A backend that keeps image data.

    Buffers are borrowed, never owned, in both directions, so a transfer can reuse one set
    of buffers from end to end:

    - ``write`` may use each chunk only until it asks ``chunks`` for the next one (or returns);
      a store that must keep bytes longer (e.g. to fill an S3 part) copies them.
    - ``read`` may overwrite the buffer it yielded once the consumer asks for the next chunk;
      a consumer that keeps bytes longer copies them. Close the iterator early with
      ``contextlib.aclosing`` so the store releases its file or connection at once.
    """

    name: str
    capabilities: StoreCapabilities

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Store all of ``chunks`` as one object named after ``key``; return where it is.

        ``size`` is the object's exact size when the caller knows it in advance (an upload's
        Content-Length, a stage or an object being copied): the chunks then add up to exactly
        ``size`` bytes, or their iteration raises (or the write is cancelled) before it ends.
        A store may use it to announce the length (every Swift PUT carries one), to size its
        parts (S3) or to preallocate; it must work without it (a chunked upload).

        The object appears only when complete: if ``chunks`` raises, the store fails or the
        call is cancelled, nothing is left behind (no temp file, no segments, no half
        multipart upload). A write under an existing key replaces that object.
        Raises ``StoreFull`` when out of space, ``StoreError`` for other store failures.
        """
        ...

    def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[memoryview | bytes]:
        """Yield exactly the bytes ``[offset, offset + length)`` (``None``: to the end).

        An async generator: errors (``ObjectNotFound``, ``StoreError``) surface on the first
        iteration. A range outside the object is a caller bug (``ValueError``): callers
        resolve ranges with ``streamd.io.ranges`` against the known size first.
        """
        ...

    async def delete(self, location: str) -> None:
        """Remove the object; deleting a missing object is not an error (retries are safe)."""
        ...

    async def stat(self, location: str) -> int:
        """Return the object's size in bytes; raise ``ObjectNotFound`` if there is none."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds open (connection pools, client threads) at shutdown.

        Nothing to do for a local store. The store is not used afterwards.
        """
        ...


class LinkingStore(Store, Protocol):
    """A store that declares ``capabilities.hard_links``: a complete local file can become
    an object without a byte being copied (the file store, for the staging area's imports)."""

    async def link_from(self, path: Path, *, key: str) -> StoredObject | None:
        """Make the complete file ``path`` the object ``key`` (replacing one already there).

        ``path`` keeps its own name, for the caller to remove once the object is recorded.
        Returns None when this file cannot be linked (it is on another file system, or links
        are not supported there): the caller copies it through ``write`` instead. Raises
        ``StoreFull``/``StoreError`` like ``write``.
        """
        ...


def can_link(store: Store) -> TypeGuard[LinkingStore]:
    """Does ``store`` take local files by hard link? Asks its declared capabilities."""
    return store.capabilities.hard_links


class OpenFile:
    """A complete object opened as a local file: ``fileno()`` and ``size``, for
    ``os.sendfile``. The descriptor keeps the data readable even if the object is deleted
    meanwhile (the inode lives until it is closed); close it once sent."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("the file is closed")
        return self._fd

    def will_need(self, offset: int, length: int) -> None:
        """Start reading ``[offset, offset + length)`` into the page cache, without waiting
        for it (``POSIX_FADV_WILLNEED``): the next window of a ``sendfile`` is read from disk
        while this one goes out. A hint only; a file system that ignores it costs nothing.

        Skipped when the range's last byte is already in the page cache (a one-byte
        ``RWF_NOWAIT`` read says so without touching the disk): the kernel walks every page
        of the range even when all are cached, which in a boot storm (every window cached)
        cost the event loop ~0.6 ms per 8 MiB window, a tenth of a CPU-second per GiB."""
        if length <= 0:
            return
        fd = self.fileno()
        if posix.byte_cached(fd, offset + length - 1):
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)

    def cached(self, offset: int, length: int) -> bool:
        """Whether the page cache holds the range's ends (``posix.range_cached``)."""
        return posix.range_cached(self.fileno(), offset, length)

    def close(self) -> None:
        """Never blocks (a local file); safe to call twice, and while cancelled."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalFileStore(Store, Protocol):
    """A store that declares ``capabilities.local_files``: its objects are files on this
    machine that a download can send with ``os.sendfile`` instead of reading them."""

    async def open_file(self, location: str) -> OpenFile:
        """Open the object at ``location`` for reading; raise ``ObjectNotFound`` if there is
        none, ``StoreError`` if it cannot be opened. The caller closes it."""
        ...


def has_local_files(store: Store) -> TypeGuard[LocalFileStore]:
    """Are ``store``'s objects local files that ``open_file`` opens? Asks its declared
    capabilities."""
    return store.capabilities.local_files


class SweepingStore(Store, Protocol):
    """A store that declares ``capabilities.sweeps``: it can find again what a write killed
    with its process left behind (a write that fails or is cancelled cleans up itself; one
    whose process dies cannot), so that whoever repairs the upload can remove it."""

    async def discard_unfinished(self, key: str) -> int:
        """Remove what unfinished writes under ``key`` left; return how many pieces went.

        The object at ``key``, if there is one, and everything it is made of stay. Call it
        only while no write under ``key`` is running (its pieces look just the same): after
        taking over the lease of the upload that a dead node left.
        """
        ...


def can_sweep(store: Store) -> TypeGuard[SweepingStore]:
    """Can ``store`` find the pieces of writes cut off with their process? Asks its
    declared capabilities."""
    return store.capabilities.sweeps


@dataclass(frozen=True)
class Locations:
    """How an object store names its objects: ``<scheme>://<store>/<container>/<name>``.

    The store's name is part of the location so that one registry row says unambiguously
    which store it belongs to, and a location from another store is never read here.
    """

    scheme: str
    store: str
    container: str

    @property
    def _head(self) -> str:
        return f"{self.scheme}://{self.store}/{self.container}/"

    def of(self, name: str) -> str:
        return self._head + name

    def name(self, location: str) -> str:
        """The object name in ``location``; ``ObjectNotFound`` if it is not this store's."""
        name = location.removeprefix(self._head)
        if name == location or not name:
            raise ObjectNotFound(f"no such image data in store {self.store!r}")
        return name


def check_key(key: str) -> str:
    """Refuse keys that could escape a store's namespace or clash with its temp names."""
    if (
        not key
        or len(key) > MAX_KEY_LENGTH
        or key.startswith(".")
        or any(c in key for c in "/\\\0")
        or not key.isprintable()
    ):
        raise ValueError(f"invalid object key {key!r}")
    return key


def check_range(offset: int, length: int | None, size: int) -> int:
    """Return the length to read; a range outside the object is a caller bug."""
    if offset < 0 or offset > size:
        raise ValueError(f"offset {offset} outside object of {size} bytes")
    if length is None:
        return size - offset
    if length < 0 or offset + length > size:
        raise ValueError(f"range {offset}+{length} outside object of {size} bytes")
    return length

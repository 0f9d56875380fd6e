"""What a store is: the one protocol every backend (file, memory, S3, HTTP) implements.

A store keeps whole objects of bytes. It names them itself: ``write`` takes the image id as a
*key* and answers with a *location* (``file:///…``, ``s3://…``) that the registry records and
later hands back to ``read``, ``stat`` and ``delete``. Capabilities tell callers, and
``/v2/info/stores``, what a store can do instead of letting them find out by failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

# 255 is NAME_MAX on Linux; the file store adds a prefix and a suffix for its temp name
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredObject:
    """A complete object: where it is and how many bytes it holds."""

    location: str
    size: int


@dataclass(frozen=True)
class StoreCapabilities:
    """What a store can do, declared so callers plan for it rather than discover it.

    ``ranged_reads``: ``read`` fetches only the bytes asked for (no read-and-discard).
    ``sparse_writes``: all-zero runs cost no space. ``max_readers``/``max_writers``: how
    many transfers the store can take at once (``None``: no limit of its own).
    ``read_only``: ``write`` and ``delete`` are refused (e.g. the HTTP store).
    """

    ranged_reads: bool
    sparse_writes: bool
    max_readers: int | None
    max_writers: int | None
    read_only: bool = False


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

    async def write(self, chunks: AsyncIterable[memoryview], *, key: str) -> StoredObject:
        """Store all of ``chunks`` as one object named after ``key``; return where it is.

        The object appears only when complete: if ``chunks`` raises, the store fails or the
        call is cancelled, nothing is left behind (no temp file, no half multipart upload).
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

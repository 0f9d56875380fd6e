"""Hashers by name: hashlib's algorithms and xxhash's xxh3.

Where each one runs is decided by measurement (1 MiB chunks, this project's 2-core CI VM):
md5 ~610 MiB/s and sha512 ~690 MiB/s hold the GIL for ~1.5 ms per MiB unless run in a
thread, where hashlib releases it, so two hashers in two threads give ~1.9×. xxh3 hashes a
MiB in ~34 µs (~30 GiB/s) while a ``trio.to_thread`` hop alone costs ~175 µs, so xxh3 runs
inline in the event loop.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import xxhash

_XXH3 = {"xxh3_128": xxhash.xxh3_128, "xxh3_64": xxhash.xxh3_64}


class Hasher(Protocol):
    """What hashlib and xxhash objects have in common, as far as streamd uses them."""

    name: str

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(algo: str) -> Hasher:
    """A fresh hasher for ``algo``: a hashlib name or ``xxh3_128``/``xxh3_64``."""
    if algo in _XXH3:
        return _XXH3[algo]()
    try:
        # usedforsecurity=False: md5 is an integrity checksum here, allowed on FIPS systems
        return hashlib.new(algo, usedforsecurity=False)
    except ValueError:
        raise ValueError(f"unknown hash algorithm {algo!r}") from None


def runs_inline(algo: str) -> bool:
    """True if hashing a chunk costs less than a hop to a worker thread."""
    return algo in _XXH3

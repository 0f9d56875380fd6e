"""Stores under test. Every store in ``STORES`` runs the whole conformance suite.

To add a store (S3, HTTP), write a factory that returns a ``StoreUnderTest`` and add it to
``STORES``; ``leftovers`` must list *everything* the store holds for the test, temp and
incomplete objects included (for S3: objects and unfinished multipart uploads). ``fetched``,
where the test can count it, is how many bytes the store has taken from its backend so far
(for S3: bytes the server sent); it shows whether ranged reads fetch only the range.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from streamd.io import FileStore, MemoryStore, Store, ThrottledStore
from streamd.units import KiB

READ_CHUNK = 16 * KiB  # small, so that objects of a few chunks stay tiny


@dataclass
class StoreUnderTest:
    store: Store
    leftovers: Callable[[], Awaitable[list[str]]]
    fetched: Callable[[], int] | None = None


def _bytes_read_by_this_process() -> int:
    """What every thread of this process has read through read-like syscalls so far,
    page-cache hits included (Linux's ``/proc/self/io``)."""
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


# a local store's ``fetched``, where Linux counts it
PROCESS_READS = _bytes_read_by_this_process if os.path.exists("/proc/self/io") else None


def file_store(tmp_path: Path) -> StoreUnderTest:
    root = tmp_path / "images"
    store = FileStore(root, read_chunk=READ_CHUNK)

    async def leftovers() -> list[str]:
        return sorted(await trio.to_thread.run_sync(os.listdir, root))

    return StoreUnderTest(store, leftovers, PROCESS_READS)


def memory_store(tmp_path: Path) -> StoreUnderTest:
    store = MemoryStore(read_chunk=READ_CHUNK)

    async def leftovers() -> list[str]:
        return sorted(store.objects)

    return StoreUnderTest(store, leftovers)


def throttled_file_store(tmp_path: Path) -> StoreUnderTest:
    inner = file_store(tmp_path)
    return StoreUnderTest(ThrottledStore(inner.store, delay=0), inner.leftovers, inner.fetched)


STORES: dict[str, Callable[[Path], StoreUnderTest]] = {
    "file": file_store,
    "memory": memory_store,
    "throttled-file": throttled_file_store,
}


@pytest.fixture(params=sorted(STORES))
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    return STORES[request.param](tmp_path)

"""Stores under test. Every store in ``STORES`` runs the whole conformance suite.

To add a store (S3, HTTP), write a factory that returns a ``StoreUnderTest`` and add it to
``STORES``; ``leftovers`` must list *everything* the store holds for the test, temp and
incomplete objects included (for S3: objects and unfinished multipart uploads). ``fetched``,
where the test can count it, is how many bytes the store has taken from its backend so far
(for S3: bytes the server sent); it shows whether ranged reads fetch only the range.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from streamd.io import FileStore, MemoryStore, Store, ThrottledStore
from streamd.io.stores.s3 import S3Settings, S3Store
from streamd.io.stores.swift import SwiftCredentials, SwiftStore
from streamd.units import KiB
from tests.objectstores import SWIFT_KEY, SWIFT_USER

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


def swift_store(request: pytest.FixtureRequest) -> StoreUnderTest:
    """A Swift store on the session's real Swift, in a container of its own; small segments
    (two and a bit read chunks) so that objects of a few chunks are large objects."""
    swift = request.getfixturevalue("swift_server")
    store = SwiftStore("swift", SwiftCredentials(auth_url=swift.auth_url, user=SWIFT_USER,
                                                 key=SWIFT_KEY),
                       container=f"c-{uuid.uuid4().hex[:12]}", segment_size=2 * READ_CHUNK + 3)

    async def leftovers() -> list[str]:
        return await swift_leftovers(store)

    return StoreUnderTest(store, leftovers, lambda: store.bytes_fetched)


def s3_store(endpoint: str, access_key: str, secret_key: str) -> StoreUnderTest:
    store = S3Store("s3", S3Settings(bucket=f"b-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint,
                                     access_key=access_key, secret_key=secret_key),
                    read_chunk=READ_CHUNK)

    async def leftovers() -> list[str]:
        return sorted(await store.list_names())

    return StoreUnderTest(store, leftovers, lambda: store.bytes_fetched)


def s3_on_swift(request: pytest.FixtureRequest) -> StoreUnderTest:
    swift = request.getfixturevalue("swift_server")
    return s3_store(swift.endpoint, SWIFT_USER, SWIFT_KEY)


def s3_on_moto(request: pytest.FixtureRequest) -> StoreUnderTest:
    return s3_store(request.getfixturevalue("moto_server").endpoint, "testing", "testing")


async def swift_leftovers(store: SwiftStore) -> list[str]:
    """The container's objects, and every segment that no manifest in it names (orphans)."""
    names = await store.list_names()
    objects = [n for n in names if not n.startswith(f"{store.segments}/")]
    segments = {n for n in names if n.startswith(f"{store.segments}/")}
    for name in objects:
        for path in await store._segments_of(name):
            segments.discard(path.lstrip("/"))
    return sorted(objects) + sorted(f"orphan {s}" for s in segments)


STORES: dict[str, Callable[[Path], StoreUnderTest]] = {
    "file": file_store,
    "memory": memory_store,
    "throttled-file": throttled_file_store,
}
# stores on a server the session starts (a real Swift, moto): built from the test's request
REMOTE_STORES: dict[str, Callable[[pytest.FixtureRequest], StoreUnderTest]] = {
    "swift": swift_store,
    "s3-on-swift": s3_on_swift,
    "s3-on-moto": s3_on_moto,
}


# the stores each capability's own conformance test runs on, so that no test is collected
# only to be skipped; test_declares_capabilities checks this table against what each store
# declares (and whether its fetches can be counted)
LINKING = ["file"]  # hard_links
COUNTED_RANGES = ["file", "s3-on-moto", "s3-on-swift", "swift", "throttled-file"]


async def _open(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[StoreUnderTest]:
    if request.param in STORES:
        under_test = STORES[request.param](tmp_path)
    else:
        under_test = REMOTE_STORES[request.param](request)
    try:
        yield under_test
    finally:
        await under_test.store.aclose()


@pytest.fixture(params=sorted(STORES) + sorted(REMOTE_STORES))
async def sut(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    async for under_test in _open(request, tmp_path):
        yield under_test


@pytest.fixture(params=LINKING)
async def linking_sut(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[StoreUnderTest]:
    async for under_test in _open(request, tmp_path):
        yield under_test


@pytest.fixture(params=COUNTED_RANGES)
async def counted_sut(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[StoreUnderTest]:
    async for under_test in _open(request, tmp_path):
        yield under_test

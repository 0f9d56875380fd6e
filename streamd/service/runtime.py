"""The long-lived parts of a running server, opened and closed together.

``open_runtime`` is entered inside the server's nursery: the registry's engine and its
worker-thread limiter, the stores, the staging area, the transfer slots, the import jobs and
this node's leases (``streamd.service.leases``, renewed by tasks in that nursery) and the
read-through cache (``streamd.service.node_cache``, its fills in a nursery of its own) all live
exactly as long as that block. The runtime is a container: it runs no use case.
Start-up repair (``streamd.service.repair``) and the periodic jobs
(``streamd.service.periodic``) are run by whoever opens it, inside its block, so that they
are over before the registry's engine is disposed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import trio

from streamd.config import Settings
from streamd.io import BufferBudget, ByteSource, Store, UploadResult, store_stream
from streamd.io.inspection import DiskInspection
from streamd.io.staging import StagingArea
from streamd.registry import (
    ImageRegistry,
    LeaseRegistry,
    MemberRegistry,
    ensure_current,
    make_engine,
    make_loop_engine,
    utcnow,
)
from streamd.registry.tasks import TaskRegistry
from streamd.service.jobs import ImageJobs
from streamd.service.leases import NodeLeases
from streamd.service.node_cache import NodeCache, open_node_cache
from streamd.service.stores import StoreSet, open_stores
from streamd.service.transfer_slots import TransferSlots

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    registry: ImageRegistry
    db_limiter: trio.CapacityLimiter
    nursery: trio.Nursery
    stores: StoreSet  # where image data is kept; uploads go to stores.default unless told
    # worker threads for the data plane (store syscalls, hashers), shared by all transfers
    io_limiter: trio.CapacityLimiter
    transfers: TransferSlots
    buffers: BufferBudget  # transfer buffers beyond each upload's first
    members: MemberRegistry
    # interoperable import: staged data, the import tasks, and the jobs running on images
    staging: StagingArea
    tasks: TaskRegistry
    jobs: ImageJobs
    # what this node works on, held in the registry so that other nodes leave it alone
    leases: NodeLeases
    # this node's read-through cache in front of the cached stores (None: no cached store)
    cache: NodeCache | None = None

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one registry call in a worker thread, at most ``db_threads`` at a time."""
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self.db_limiter, abandon_on_cancel=False
        )

    async def store_stream(
        self,
        source: ByteSource,
        store: Store,
        *,
        key: str,
        size_cap: int | None,
        expected_size: int | None = None,
        os_hash_algo: str | None = None,
        accept: Callable[[DiskInspection], None] | None = None,
    ) -> UploadResult:
        """``streamd.io.store_stream`` with this server's hashing, chunking, buffers and
        threads: the one way uploads, stages and imports move data, and (into a
        ``DiscardStore``) the way data kept elsewhere is hashed. ``os_hash_algo``: another
        algorithm than the cloud's (a location's validation data). ``accept``: inspect the
        data's disk format and judge it before it is committed
        (``streamd.service.disk_formats.acceptor``)."""
        settings = self.settings
        return await store_stream(
            source,
            store,
            key=key,
            os_hash_algo=os_hash_algo or settings.os_hash_algo,
            chunk_size=settings.chunk_size,
            queue_depth=settings.queue_depth,
            budget=self.buffers,
            size_cap=size_cap,
            expected_size=expected_size,
            limiter=self.io_limiter,
            accept=accept,
            # other transfers moving data: the cores are busy without a second hash thread
            one_hash_thread=self.transfers.active > 1,
        )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    nursery: trio.Nursery,
    *,
    primary: bool = True,
    clock: Callable[[], dt.datetime] = utcnow,
    cache_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Runtime]:
    """The runtime of a server whose nursery is ``nursery`` (where import jobs run, and the
    renewals of this node's leases).

    Only the ``primary`` process removes the temp files a crash left in the store (when
    it opens it): a worker, started later, would remove those of uploads running in the
    others. ``clock`` (naive UTC) stamps the leases; ``cache_clock`` (seconds) the cache's
entries and fills. On exit the import jobs are cancelled
    and waited for, then the engine goes.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url, connections=settings.db_threads)
    loop_engine = make_loop_engine(settings.registry_url)
    try:
        limiter = trio.CapacityLimiter(settings.db_threads)
        await trio.to_thread.run_sync(
            lambda: ensure_current(engine, migrate=settings.should_auto_migrate), limiter=limiter
        )
        io_limiter = trio.CapacityLimiter(settings.io_threads)
        stores = await open_stores(settings, io_limiter, reap=primary)
        images = ImageRegistry(engine, loop_engine=loop_engine)
        leases = NodeLeases(LeaseRegistry(engine, clock=clock), images, node=settings.node,
                            ttl=settings.lease_ttl, nursery=nursery, limiter=limiter)
        rt = Runtime(
            settings=settings,
            registry=images,
            db_limiter=limiter,
            nursery=nursery,
            stores=stores,
            io_limiter=io_limiter,
            transfers=TransferSlots(settings.max_transfers),
            buffers=BufferBudget(settings.chunk_size, settings.shared_buffers),
            members=MemberRegistry(engine),
            staging=await trio.to_thread.run_sync(
                lambda: StagingArea(settings.staging_dir, limiter=io_limiter,
                                    read_chunk=settings.chunk_size)),
            tasks=TaskRegistry(engine),
            # one process: claims in memory; several: also an flock each process sees
            jobs=ImageJobs(settings.data_dir / "locks" if settings.workers > 1 else None,
                           leases=leases),
            leases=leases,
        )
        try:
            # the cache's fills run in its own nursery, closed before the stores are
            async with open_node_cache(settings, stores, io_limiter,
                                       clock=cache_clock) as rt.cache:
                yield rt
        finally:
            await rt.jobs.drain()  # before the engine goes: a cancelled job updates the registry
            await stores.aclose()
    finally:
        engine.dispose()
        if loop_engine is not None:
            loop_engine.dispose()

"""The long-lived parts of a running server, opened and closed together.

``open_runtime`` is entered inside the server's nursery: the registry's engine and its
worker-thread limiter, the stores, the transfer limiter and (later) the periodic jobs all
live exactly as long as that block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import trio

from streamd.config import Settings
from streamd.io import Store
from streamd.registry import ImageRegistry, MemberRegistry, ensure_current, make_engine
from streamd.service.stores import open_store
from streamd.service.transfers import TransferSlots, recover_interrupted_uploads

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    registry: ImageRegistry
    db_limiter: trio.CapacityLimiter
    nursery: trio.Nursery
    store: Store
    # worker threads for the data plane (store syscalls, hashers), shared by all transfers
    io_limiter: trio.CapacityLimiter
    transfers: TransferSlots
    members: MemberRegistry

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one registry call in a worker thread, at most ``db_threads`` at a time."""
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self.db_limiter, abandon_on_cancel=False
        )


@asynccontextmanager
async def open_runtime(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url)
    try:
        limiter = trio.CapacityLimiter(settings.db_threads)
        await trio.to_thread.run_sync(
            lambda: ensure_current(engine, migrate=settings.should_auto_migrate), limiter=limiter
        )
        io_limiter = trio.CapacityLimiter(settings.io_threads)
        rt = Runtime(
            settings=settings,
            registry=ImageRegistry(engine),
            db_limiter=limiter,
            nursery=nursery,
            store=await open_store(settings, io_limiter),
            io_limiter=io_limiter,
            transfers=TransferSlots(settings.max_transfers),
            members=MemberRegistry(engine),
        )
        await recover_interrupted_uploads(rt)
        yield rt
    finally:
        engine.dispose()

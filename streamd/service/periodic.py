"""The periodic jobs of a server, in a nursery of their own.

Two jobs, and three more when this node has a read-through cache (its cleaner, pruner and
prefetcher: ``streamd.service.cache``): the stage reaper, which removes stages left
unchanged for ``stage_max_age`` (``streamd.service.staging.reap_stale_stages``), and the
repair, which every ``repair_interval`` seconds puts back the uploads and imports whose
lease has run out (a crashed node's: ``streamd.service.repair``). Only the primary process
runs periodic jobs (``streamd.server``). ``periodic_jobs`` opens their nursery and, on
exit, cancels them and waits until they have finished; entered inside ``open_runtime``'s
block, it guarantees that no job still uses the registry when its engine is disposed.

Time is injected: ``clock`` is the wall clock that file times are compared with, and the
waits are trio's (``streamd.service.cadence``), so tests drive both with trio's ``MockClock``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from streamd.service import cache, downloads
from streamd.service.cadence import every
from streamd.service.repair import repair
from streamd.service.runtime import Runtime
from streamd.service.staging import reap_stale_stages

# seconds between passes of the reaper at most: a stage outlives stage_max_age by at most
# this much, and a pass costs one directory scan
REAP_INTERVAL = 600.0


@asynccontextmanager
async def periodic_jobs(
    rt: Runtime, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[None]:
    """Run the periodic jobs for as long as the block; cancel them and wait on exit."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(run_stage_reaper, rt, clock=clock))
        nursery.start_soon(run_repair, rt)
        if rt.cache is not None:  # the read-through cache's upkeep (streamd.service.cache)
            nursery.start_soon(cache.run_cleaner, rt)
            nursery.start_soon(cache.run_pruner, rt)
            nursery.start_soon(cache.run_prefetcher, rt, downloads.read_copies)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


def reap_interval(rt: Runtime) -> float:
    """Seconds between passes: twice per ``stage_max_age``, at most ``REAP_INTERVAL``."""
    return min(REAP_INTERVAL, rt.settings.stage_max_age / 2)


async def run_stage_reaper(rt: Runtime, *, clock: Callable[[], float] = time.time) -> None:
    """Reap stale stages every ``reap_interval`` seconds until cancelled; a failed pass is
    logged and tried again at the next one, it does not stop the server."""
    await every(reap_interval(rt), lambda: reap_stale_stages(rt, now=clock()),
                "reaping stale stages")


async def run_repair(rt: Runtime) -> None:
    """Repair every ``repair_interval`` seconds until cancelled; a failed pass is logged and
    tried again at the next one."""
    await every(rt.settings.repair_interval, lambda: repair(rt, startup=False), "repair pass")

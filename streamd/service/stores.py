"""The image store a server writes to, built from the settings.

Today that is one file store under ``settings.images_dir``; ``store_throttle_mib_s`` wraps
it in ``ThrottledStore`` so that tests and demos can watch back-pressure and bounded memory
with a store slower than the network.
"""

from __future__ import annotations

import logging

import trio

from streamd.config import Settings
from streamd.io import FileStore, Store, ThrottledStore
from streamd.units import MiB

log = logging.getLogger(__name__)


async def open_store(
    settings: Settings, limiter: trio.CapacityLimiter, *, reap: bool = True
) -> Store:
    """Build the configured store and (``reap``) remove what a crash left in it.

    Reap before serving, in one process: every temp file in the images dir then belongs
    to an upload that can no longer finish (one data dir per server; see
    ``FileStore.reap_temp_files``). A worker started later must not: it would remove the
    temp files of uploads running in the others.
    """
    file_store = await trio.to_thread.run_sync(
        lambda: FileStore(
            settings.images_dir, limiter=limiter, read_chunk=settings.read_chunk_size
        )
    )
    reaped = await file_store.reap_temp_files(older_than=0) if reap else 0
    if reaped:
        log.warning("removed %d temp file(s) of uploads interrupted by a crash", reaped)
    if not settings.store_throttle_mib_s:
        return file_store
    rate = settings.store_throttle_mib_s * MiB
    log.warning("store throttled to %.1f MiB/s (store_throttle_mib_s: for tests only)",
                settings.store_throttle_mib_s)
    return ThrottledStore(file_store, delay=0.0, bytes_per_second=rate)

"""Where an image's data is and where it is only zeros (``GET /v2/images/{id}/extents``).

A streamd extension (``transfer_extensions``), after oVirt imageio's extents: a client that
knows the zero runs does not download them, it leaves holes. On a store whose objects are
local files (the file store, where an upload's zero chunks already became holes) the runs
come from the file (``SEEK_DATA``/``SEEK_HOLE``); on an object store nothing is recorded about
zeros, so the whole image is one data run (``zero_runs_known`` false) and a client finds the
zeros in what it reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from streamd.context import RequestContext
from streamd.errors import Conflict
from streamd.service.downloads import image_for_download, open_local
from streamd.service.runtime import Runtime
from streamd.service.stage_parts import ensure_enabled
from streamd.sparse import Extent, extents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageExtents:
    """The runs of an image's ``size`` bytes; ``zero_runs_known``: False when the store
    cannot tell zeros from data (then it is one data run)."""

    size: int
    extents: list[Extent]
    zero_runs_known: bool
    xxh3: str | None = None  # xxh3-128 of the data, as recorded: a client's fast check


async def image_extents(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageExtents:
    """The data and zero runs of an active image the caller may download."""
    ensure_enabled(rt, "GET /v2/images/{id}/extents")
    record = await image_for_download(rt, ctx, image_id)
    if record.location is None or record.size is None:
        raise Conflict(f"Image {image_id} has no data (status {record.status}): no extents.")
    size = record.size
    whole = ImageExtents(size, [Extent(0, size, zero=False)] if size else [], False,
                         record.xxh3)
    opened = await open_local(rt, record, size)
    if opened is None:  # not a local file (or not readable as one): one data run
        return whole
    with opened:
        runs = await trio.to_thread.run_sync(extents, opened.fileno(), size,
                                             limiter=rt.io_limiter)
    return ImageExtents(size, runs, True, record.xxh3)

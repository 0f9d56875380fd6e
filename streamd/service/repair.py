"""Start-up repair: put back what a crash left half-done, before the server takes requests.

A crash can leave images ``saving`` (an upload) or ``importing`` (an import), import tasks
unfinished and temp files in the staging area (those in the image store go when the store
is opened: ``streamd.service.stores.open_stores``). None of that can finish any more: each
image goes back to where the operation can be retried, as a failed one would.

Only safe while nothing can be running: at start-up, in the primary process, before the
worker processes start (``streamd.server``); a worker could not tell another process's
upload in progress from one a crash interrupted. And only with the embedded database: with
a shared one, another node's uploads and imports would be reset too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from streamd.errors import Conflict, NotFound
from streamd.registry import Filter, ImageQuery, ImageRecord, Viewer
from streamd.service.imports import IMPORTING_TO, INTERRUPTED, TASK_TIME_TO_LIVE, revert_importing
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

_PAGE = 500  # images put back per registry query


async def repair_after_crash(rt: Runtime) -> None:
    """Put back the uploads and imports a crash interrupted (embedded database only)."""
    if not rt.settings.uses_embedded_db:
        return
    await _reset_uploads(rt)
    await _reset_imports(rt)


async def _reset_uploads(rt: Runtime) -> None:
    """``saving`` images back to ``queued``: their data never became complete."""

    async def queue_again(image: ImageRecord) -> bool:
        try:
            await rt.db(rt.registry.transition, image.id, "saving", "queued")
        except (NotFound, Conflict):
            return False
        return True

    reset = await _put_back_all(rt, "saving", queue_again)
    if reset:
        log.warning("reset %d image(s) left saving by an interrupted upload to queued", reset)


async def _reset_imports(rt: Runtime) -> None:
    """``importing`` images back to ``uploading`` (their stage is there) or ``queued``, and
    unfinished import tasks failed."""
    await rt.staging.reap_temp_files()

    async def revert(image: ImageRecord) -> bool:
        stores = image.properties.get(IMPORTING_TO, "")
        await revert_importing(rt, image.id, stores, keep_stage=True)
        return True

    reset = await _put_back_all(rt, "importing", revert)
    failed = await rt.db(rt.tasks.fail_unfinished, INTERRUPTED,
                         rt.tasks.clock() + TASK_TIME_TO_LIVE)
    if reset or failed:
        log.warning("reset %d image(s) left importing by a crash; marked %d task(s) failed",
                    reset, failed)


async def _put_back_all(
    rt: Runtime, status: str, put_back: Callable[[ImageRecord], Awaitable[bool]]
) -> int:
    """Call ``put_back`` on every image in ``status`` (hidden ones too); return how many it
    put back. Each page is asked for afresh: ``put_back`` moves an image out of ``status``."""
    viewer = Viewer(project_id=None, is_admin=True)
    filters = (Filter("status", "eq", status), Filter("os_hidden", "in", (True, False)))
    done = 0
    while True:
        page = await rt.db(rt.registry.list,
                           ImageQuery(viewer=viewer, filters=filters, limit=_PAGE))
        for image in page:
            done += await put_back(image)
        if len(page) < _PAGE:
            return done

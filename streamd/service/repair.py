"""Repair: put back the work that a crashed node left half-done, at start-up and periodically.

A node that dies (kill -9, power loss) can leave images ``saving`` (an upload) or
``importing`` (an import), their tasks unfinished and, in an object store, the pieces of an
unfinished write. None of that can finish any more: each image goes back to where the
operation can be retried, as a failed one would. Several nodes share the registry, so a
repair must tell work in progress from work a crash interrupted: every upload and import
holds a lease that its node renews (``streamd.service.leases``), and an image is repaired
only by the node that takes its lease over, which it can do only while nobody holds a live
one. A live lease of another node is never touched; one that ran out is a crashed (or cut
off) node's, and is repaired about ``lease_ttl`` after its last renewal. A node starting up
first releases its own leases (none of its work can be running), so what it was doing when
it died is repaired at once rather than one TTL later.

Every node repairs: at start-up, in the primary process before any worker starts
(``streamd.server``), and every ``repair_interval`` seconds (``streamd.service.periodic``).
Per image, holding its lease:

- ``saving`` → ``queued``;
- ``importing`` → ``uploading`` when its stage is still there (on this node, or recorded on
  another node: ``os_glance_stage_host``, which keeps it), else ``queued``; its import task
  is marked failed;
- before either, in each store that can keep the pieces of a write cut off with its process
  (``can_sweep``: Swift segments, S3 multipart uploads) and holds no copy of the image, what
  writes under the image's key left unfinished is removed: the status still keeps every
  writer out then, so no new write's pieces can be taken for old ones.

Local repairs, for this node's own disk only: temp files in its file stores (removed when
the stores are opened, ``open_stores``) and in its staging area at start-up, and
periodically the stages whose image is gone (deleted through another node) or staged again
on another node. At start-up a node also records its current URL on the images it holds
stages of, if it has changed (``streamd.service.stage_host``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.io import can_sweep
from streamd.registry import Filter, ImageQuery, ImageRecord, Viewer
from streamd.registry.tasks import UNFINISHED
from streamd.service.imports import (
    FAILED_IMPORT,
    IMPORT_TASK,
    IMPORTING_TO,
    INTERRUPTED,
    TASK_TIME_TO_LIVE,
    revert_importing,
)
from streamd.service.runtime import Runtime
from streamd.service.stage_host import STAGE_HOST, STAGE_NODE, stage_marks, staged_elsewhere

log = logging.getLogger(__name__)

_PAGE = 500  # images listed per registry query


@dataclass
class Repaired:
    """What one repair pass did."""

    uploads: int = 0  # images put back from saving
    imports: int = 0  # images put back from importing
    left_alone: int = 0  # images in one of those statuses whose work is live
    stages: int = 0  # local stages removed (temp files, stages of deleted images)


async def repair(rt: Runtime, *, startup: bool) -> Repaired:
    """One repair pass (see the module's docstring); ``startup``: before serving, when this
    node's own leases are released first and unfinished local temp files removed."""
    done = Repaired()
    if startup:
        forgotten = await rt.leases.forget_own()
        if forgotten:
            log.warning("node %s: released %d lease(s) it held when it stopped; their work "
                        "is repaired now", rt.leases.node, forgotten)
        done.stages += await rt.staging.reap_temp_files()
        await _record_new_url(rt)
    for image in await _images_in(rt, "saving"):
        await _repair_one(rt, image, "upload", _requeue, done)
    for image in await _images_in(rt, "importing"):
        await _repair_one(rt, image, "import", _revert_import, done)
    if startup and rt.settings.uses_embedded_db:
        # one node only (the database is this node's file): no task can be running anywhere
        await rt.db(rt.tasks.fail_unfinished, INTERRUPTED, rt.tasks.clock() + TASK_TIME_TO_LIVE)
    if not startup:
        done.stages += await _drop_orphan_stages(rt)
    if done.uploads or done.imports:
        log.warning("REPAIR node=%s: %d upload(s) put back to queued, %d import(s) put back "
                    "(their tasks failed); %d image(s) left to the nodes working on them",
                    rt.leases.node, done.uploads, done.imports, done.left_alone)
    return done


async def _record_new_url(rt: Runtime) -> None:
    """This node's stages, recorded under a URL it no longer has (it was restarted on
    another port or address), get its URL now, so that other nodes send imports here."""
    here = stage_marks(rt.settings)
    moved = [image for image in await _images_in(rt, "uploading", (STAGE_NODE, rt.leases.node))
             if image.properties.get(STAGE_HOST) != here[STAGE_HOST]]
    for image in moved:
        try:
            await rt.db(rt.registry.update, image.id, set_properties=here,
                        expected_status=["uploading"])
        except (NotFound, Conflict):
            continue
        log.warning("image %s: its stage is on this node, now at %s", image.id,
                    here[STAGE_HOST])


async def _images_in(rt: Runtime, status: str, prop: tuple[str, str] | None = None
                     ) -> list[ImageRecord]:
    """Every image in ``status`` (with the property ``prop``, if given), hidden ones too,
    by pages (a marker that another node deletes meanwhile ends the list: the next pass
    sees the rest)."""
    viewer = Viewer(project_id=None, is_admin=True)
    filters = (Filter("status", "eq", status), Filter("os_hidden", "in", (True, False)))
    found: list[ImageRecord] = []
    marker = None
    while True:
        try:
            page = await rt.db(rt.registry.list, ImageQuery(
                viewer=viewer, filters=filters, properties=(prop,) if prop else (),
                limit=_PAGE, marker=marker))
        except (NotFound, BadRequest):
            return found
        found += page
        if len(page) < _PAGE:
            return found
        marker = page[-1].id


async def _repair_one(
    rt: Runtime, image: ImageRecord, kind: str,
    put_back: Callable[[Runtime, ImageRecord], Awaitable[bool]], done: Repaired,
) -> None:
    listed_status = image.status
    lease = await rt.leases.take_over(kind, image.id)
    if lease is None:
        done.left_alone += 1  # live: its node is at work on it
        return
    try:
        try:
            image = await rt.db(rt.registry.get, image.id)
        except NotFound:
            return  # deleted after it was listed
        if image.status != listed_status:
            return  # finished, or put back by its node, after it was listed
        # the pieces go first, while the status still keeps every writer out: once the
        # image is ``queued`` (or ``uploading``) again a new write may start under its key,
        # and its user must not see the image retryable while the old pieces remain
        await _sweep_stores(rt, image)
        if await put_back(rt, image):
            if kind == "upload":
                done.uploads += 1
            else:
                done.imports += 1
    except Exception:
        log.exception("REPAIR image=%s (%s) failed; the next pass tries again", image.id, kind)
    finally:
        await lease.release()


async def _requeue(rt: Runtime, image: ImageRecord) -> bool:
    """``saving`` back to ``queued``: its data never became complete."""
    try:
        await rt.db(rt.registry.transition, image.id, "saving", "queued")
    except (NotFound, Conflict):
        return False  # finished, or deleted, after it was listed
    log.warning("REPAIR image=%s: an interrupted upload, back to queued", image.id)
    return True


async def _revert_import(rt: Runtime, image: ImageRecord) -> bool:
    """``importing`` back to ``uploading`` or ``queued``, and its task failed."""
    stores = image.properties.get(IMPORTING_TO, "")
    task_id = image.properties.get(IMPORT_TASK)
    method = await _import_method(rt, task_id)
    host = staged_elsewhere(rt.settings, image)
    try:
        if method == "glance-direct" and host is not None:
            # its stage is on the node that staged it, which keeps it: importable again
            await rt.db(rt.registry.update, image.id, {"status": "uploading"},
                        {IMPORTING_TO: "", FAILED_IMPORT: stores}, [IMPORT_TASK],
                        expected_status=["importing"])
        else:
            before = await rt.db(rt.registry.get, image.id)
            if before.status != "importing":
                return False
            await revert_importing(rt, image.id, stores, keep_stage=True)
    except (NotFound, Conflict):
        return False
    if task_id is not None:
        try:
            await rt.db(rt.tasks.change, task_id, UNFINISHED, "failure", message=INTERRUPTED,
                        expires_at=rt.tasks.clock() + TASK_TIME_TO_LIVE)
        except (NotFound, Conflict):
            pass  # closed already
    log.warning("REPAIR image=%s: an interrupted import (task %s), put back", image.id,
                task_id)
    return True


async def _import_method(rt: Runtime, task_id: str | None) -> str | None:
    if task_id is None:
        return None
    try:
        task = await rt.db(rt.tasks.get, task_id)
    except NotFound:
        return None
    request = task.input.get("import_req")
    method = request.get("method") if isinstance(request, dict) else None
    return method.get("name") if isinstance(method, dict) else None


async def _sweep_stores(rt: Runtime, image: ImageRecord) -> None:
    """Remove what an interrupted write left under the image's key in every store that can
    keep such pieces and holds no copy of the image (a copy's own pieces are its data)."""
    holding = set(image.stores)
    for store in rt.stores:
        if store.name in holding or not can_sweep(store):
            continue
        try:
            swept = await store.discard_unfinished(image.id)
        except Exception:
            log.exception("REPAIR image=%s: could not sweep store %s", image.id, store.name)
            continue
        if swept:
            log.warning("REPAIR image=%s: removed %d piece(s) of an unfinished write from "
                        "store %s", image.id, swept, store.name)


async def _drop_orphan_stages(rt: Runtime) -> int:
    """Remove this node's stages whose image is gone, or was staged again on another node
    since (a stage being written or imported here is left alone)."""
    dropped = 0
    for image_id in await rt.staging.stale(older_than=0):
        if rt.jobs.busy(image_id):
            continue
        try:
            image = await rt.db(rt.registry.get, image_id)
        except NotFound:
            image = None
        if image is not None and staged_elsewhere(rt.settings, image) is None:
            continue
        try:
            with rt.jobs.claim(image_id, "stage clean-up"):
                await rt.staging.discard(image_id)
        except Conflict:
            continue  # another worker process of this node holds it
        dropped += 1
    if dropped:
        log.warning("removed %d stage(s) of images deleted or staged again elsewhere", dropped)
    return dropped

"""Image import (``POST /v2/images/{id}/import``): glance-direct, web-download, copy-image.

As Glance: the request is checked (method, image status, formats, stores, the URI's
filters) before anything changes; then a task (``api_image_import``) is created, the image
becomes ``importing`` with ``os_glance_import_task``, ``os_glance_importing_to_stores`` and
an empty ``os_glance_failed_import``, and the caller gets 202. The import itself runs as a
job in the server's nursery (``streamd.service.jobs``) and ends either ``active`` (the
properties cleared, the task ``success``) or, failed, back in ``uploading`` when staged data
remains (glance-direct can be retried at once) or ``queued`` (web-download), with
``os_glance_failed_import`` naming the store and the task ``failure`` with the reason.

- glance-direct: the complete stage becomes the store's object (a hard link on one file
  system, else a copy checked against its xxh3), with the digests computed while staging.
- web-download: the URI is fetched (``streamd.io.web_download``: SSRF filters on every hop)
  straight through the upload pipeline into the store, capped at ``image_size_cap``.
- Both are judged by their disk format (``streamd.service.disk_formats``): glance-direct by
  what was found while the data was staged, web-download while it streams. Refused data is
  not kept: the stage is removed, the image ``queued`` for a valid upload, the task failed
  with the reason (Glance 33 leaves such an image ``importing`` for good, its task failed
  with "Internal Error").
- copy-image (admins, as Glance's ``copy_image``): an active image's data is copied to
  more stores (``stores``, or ``all_stores``: every writable store that lacks it), one after
  the other, by ``streamd.service.copies`` (store to store through the pipeline, verified
  against the recorded digests). The image stays ``active`` and downloadable throughout;
  ``os_glance_importing_to_stores`` lists the stores still to come, and each finished copy
  joins ``stores``. With one store there is nowhere to copy to, so it is not offered
  (``enabled_methods``).
- Several ``stores`` for glance-direct or web-download: the data goes into the first one
  (the image becomes ``active`` there), then it is copied into the others as copy-image
  would. (Glance imports into each store from the staged file and, with
  ``all_stores_must_succeed``, puts the image back to ``queued`` when one fails; here the
  image stays ``active`` in the first store and only the copies are undone.)

``all_stores_must_succeed`` (default true, as Glance) decides what a failed copy means: true,
the task fails and the copies it made are removed (the image keeps the data it had);
false, the others go on and the task succeeds. Either way ``os_glance_failed_import`` names
the stores that failed.

With several API nodes, a glance-direct import of data staged on another node is sent to
that node (``streamd.service.stage_host``, as Glance's ``os_glance_stage_host``), where the
job then runs; each job holds the image's ``import`` lease while it runs
(``streamd.service.jobs``).

A crash during an import is repaired at start-up (``streamd.service.repair``):
``importing`` images go back to ``uploading`` if their stage is there, else ``queued``
(``revert_importing``), and unfinished tasks are marked failed. A copy that a crash
interrupted leaves its image active with the copies already made (an object written but not
yet recorded stays in the target store, and ``os_glance_importing_to_stores`` still names
the stores not reached).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from streamd import policy
from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Forbidden, NotFound, StreamdError
from streamd.io import SizeCapExceeded, StoredObject
from streamd.io.inspection import DiskInspection, DiskInspector
from streamd.io.stage_parts import not_whole
from streamd.io.web_download import SourceUnavailable, UriFilter, UriRefused, open_web_source
from streamd.registry import ImageRecord
from streamd.registry.tasks import UNFINISHED, TaskRecord
from streamd.request_ids import current_request_id
from streamd.service import copies, disk_formats, quotas, stage_host, stage_parts
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime
from streamd.service.stored_data import registry_values
from streamd.service.stores import url_filter
from streamd.units import MiB

log = logging.getLogger(__name__)

TASK_TYPE = "api_image_import"
TASK_TIME_TO_LIVE = dt.timedelta(hours=48)  # Glance's task_time_to_live
IMPORT_TASK = "os_glance_import_task"
IMPORTING_TO = "os_glance_importing_to_stores"
FAILED_IMPORT = "os_glance_failed_import"
# which image statuses each method imports into (Glance's rules and messages)
_FROM_STATUS = {"glance-direct": "uploading", "web-download": "queued"}
INTERRUPTED = "The server stopped during the import; retry the import."


def store_names(rt: Runtime) -> list[str]:
    return rt.stores.ids


def enabled_methods(rt: Runtime) -> list[str]:
    """The import methods offered: ``enabled_import_methods``, copy-image only when there
    is more than one store to copy between."""
    many = len(store_names(rt)) > 1
    return [m for m in rt.settings.enabled_import_methods if m != "copy-image" or many]


def uri_filter(settings: Settings) -> UriFilter:
    return url_filter(settings, UriFilter)


@dataclass(frozen=True)
class ImportRequest:
    """A checked import request body."""

    method: str
    uri: str | None
    stores: list[str] | None
    all_stores: bool
    all_stores_must_succeed: bool
    body: Mapping[str, Any]


def parse_import(body: Any, enabled: list[str]) -> ImportRequest:
    """The import request, or 400 with Glance's words for what is wrong with it."""
    if not isinstance(body, Mapping):
        raise BadRequest('The import request must be a JSON object, e.g. {"method": {"name": '
                         '"glance-direct"}}.')
    method = body.get("method")
    if method is None:
        raise BadRequest("Import request requires a 'method' field.")
    if not isinstance(method, Mapping) or "name" not in method:
        raise BadRequest("Import request requires a 'name' field.")
    name = method["name"]
    if name not in enabled:
        raise BadRequest(f"Unknown import method name '{name}'. This cloud offers: "
                         f"{', '.join(enabled) or 'none'}.")
    for flag in ("all_stores_must_succeed", "all_stores"):
        if not isinstance(body.get(flag, False), bool):
            raise BadRequest(f"'{flag}' must be boolean value only")
    stores = body.get("stores")
    if stores is not None and (not isinstance(stores, list)
                               or not all(isinstance(s, str) for s in stores)):
        raise BadRequest("'stores' must be a list of store identifiers.")
    if "uri" in method and name != "web-download":
        raise BadRequest('URI is only supported with method: "web-download"')
    return ImportRequest(method=name, uri=method.get("uri"), stores=stores,
                         all_stores=body.get("all_stores", False),
                         all_stores_must_succeed=body.get("all_stores_must_succeed", True),
                         body=body)


def _stores(rt: Runtime, request: ImportRequest, store_header: str | None) -> list[str]:
    """The stores to import into, as Glance reads them from the body and the
    ``X-Image-Meta-Store`` header; 409 for one that does not exist."""
    known = store_names(rt)
    if request.all_stores:
        if request.stores is not None or store_header is not None:
            raise BadRequest("All_stores parameter can't be used with x-image-meta-store "
                             "header or stores parameter")
        # Glance's _get_available_stores: a read-only (http) store takes no data
        return [store_id for store_id, store in rt.stores.stores.items()
                if not store.capabilities.read_only]
    if request.stores is not None:
        if store_header is not None:
            raise BadRequest("Stores parameter and x-image-meta-store header can't be both "
                             "specified")
        stores = request.stores
    else:
        stores = [store_header or known[0]]
    for store in stores:
        if store not in known:
            raise Conflict(f"Store for identifier {store} not found")
    return stores


async def start_import(
    rt: Runtime, ctx: RequestContext, image_id: str, body: Any, *,
    store_header: str | None = None,
) -> TaskRecord | None:
    """Check an import request, start its job, and return its task (None: nothing to do)."""
    request = parse_import(body, enabled_methods(rt))
    method = request.method
    image = await visible_image(rt, ctx, image_id)
    if image.status == "active" and method != "copy-image":
        raise Conflict("Image with status active cannot be target for import")
    if image.status != "active" and method == "copy-image":
        raise Conflict("Only images with status active can be targeted for copying")
    if method == "web-download" and image.status != "queued":
        raise Conflict(f"Image needs to be in 'queued' state to use '{method}' method")
    if method == "glance-direct" and image.status != "uploading":
        raise Conflict("Image needs to be staged before 'glance-direct' method can be used")
    for name in ("container_format", "disk_format"):
        if not getattr(image, name):
            raise Conflict(f"'{name}' needs to be set before import")
    if method == "copy-image":
        if not ctx.is_admin:  # Glance's default copy_image policy: role:admin
            raise Forbidden("You are not authorized to complete copy_image action.")
        await _ensure_no_import_running(rt, image)
    else:
        policy.ensure_modifiable(ctx, image, "import data into")
    stores = list(dict.fromkeys(_stores(rt, request, store_header)))  # each store once
    if method == "glance-direct":
        host = stage_host.staged_elsewhere(rt.settings, image)
        if host is not None:  # as Glance: the data is on the node that staged it; run there
            await stage_host.forward_import(ctx, host, image_id, request.body,
                                            store_header=store_header)
            return None
    if method == "copy-image":
        stores = _copy_targets(image, stores, request.all_stores)
        if not stores:
            return None  # Glance: 202, the image is in every store already
    if method == "web-download":
        await _check_uri(rt, request.uri)
    await _ensure_quota(rt, image)
    async with rt.jobs.reserve(image_id, "import") as reservation:
        if method == "glance-direct":
            stage = await rt.staging.stage(image_id)
            parts = await stage_parts.sealable(rt, image_id)
            if parts is not None and not parts.complete:
                raise not_whole(image_id, parts)
            if parts is None and (stage is None or not stage.complete):
                staged = 0 if stage is None else stage.size
                of = "" if stage is None or stage.total is None else f" of {stage.total}"
                raise Conflict(
                    f"Image needs to be staged before 'glance-direct' method can be used: "
                    f"{staged}{of} bytes are staged. Finish the stage (HEAD …/stage tells "
                    "the offset to resume from) and import again."
                )
        task_id = str(uuid.uuid4())
        # as Glance, stores copied to again are no longer listed as failed; others stay
        failed_before = tuple(s for s in _listed(image.properties.get(FAILED_IMPORT))
                              if s not in stores) if method == "copy-image" else ()
        job = _Job(image_id=image_id, task_id=task_id, method=method, uri=request.uri,
                   stores=stores, owner=image.owner,
                   all_must_succeed=request.all_stores_must_succeed,
                   failed_before=failed_before)
        await _mark_importing(rt, job)
        try:
            task = await rt.db(
                rt.tasks.create, TASK_TYPE, owner=ctx.project_id, image_id=image_id,
                user_id=ctx.user_id, task_id=task_id, request_id=current_request_id(),
                input={"image_id": image_id, "import_req": dict(request.body),
                       "backend": stores},
            )
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await _put_back(rt, job, exc)
            raise
        reservation.start(rt.nursery, lambda: _run(rt, job))
    log.info("IMPORT image=%s method=%s task=%s stores=%s", image_id, method, task_id,
             ",".join(stores))
    return task


def _copy_targets(image: ImageRecord, stores: list[str], all_stores: bool) -> list[str]:
    """The stores copy-image copies into: with ``all_stores`` those that lack the image
    (maybe none); else ``stores``, 400 if one of them has it already (as Glance)."""
    if all_stores:
        return [s for s in stores if s not in image.stores]
    for store in image.stores:
        if store in stores:
            raise BadRequest(copies.already_present(store))
    return stores


async def _ensure_no_import_running(rt: Runtime, image: ImageRecord) -> None:
    """409 while the import task named by ``os_glance_import_task`` is unfinished (Glance's
    import lock): a copy started on another node. This node's own jobs are refused by
    ``rt.jobs``; two nodes that both pass this check meet in ``add_location``, where one copy
    per store wins and the other is deleted."""
    task_id = image.properties.get(IMPORT_TASK)
    if not task_id:
        return
    try:
        task = await rt.db(rt.tasks.get, task_id)
    except NotFound:
        return
    if task.status in UNFINISHED:
        raise Conflict(f"New operation on image '{image.id}' is not permitted as prior "
                       f"operation is still in progress (import task {task_id})")


async def _mark_importing(rt: Runtime, job: _Job) -> None:
    """The image's ``os_glance_*`` properties for a new import job; an import (not a copy)
    also moves the image to ``importing``, which only one request can do."""
    if job.method == "copy-image":
        values: dict[str, Any] = {}
        expected = ["active"]
    else:
        values, expected = {"status": "importing"}, [_FROM_STATUS[job.method]]
    try:
        await rt.db(rt.registry.update, job.image_id, values,
                    {IMPORT_TASK: job.task_id, IMPORTING_TO: ",".join(job.stores),
                     FAILED_IMPORT: ",".join(job.failed_before)}, expected_status=expected)
    except Conflict:
        raise Conflict(f"New operation on image '{job.image_id}' is not permitted as prior "
                       "operation is still in progress") from None


def _listed(stores: str | None) -> list[str]:
    return [s for s in (stores or "").split(",") if s]


async def _ensure_quota(rt: Runtime, image: ImageRecord) -> None:
    """413 when the owner is past ``quota_image_size_total`` (a staged image's size counts
    already), or at it for a web-download, whose bytes all come on top."""
    limit = rt.settings.quota_image_size_total
    if limit is None or image.owner is None:
        return
    used = (await quotas.usage_of(rt, image.owner)).image_size_total
    if used > limit or (used == limit and image.size is None):
        raise quotas.size_quota_exceeded(rt, image.owner, max(0, limit - used))


async def _check_uri(rt: Runtime, uri: str | None) -> None:
    """400 for a URI the filters refuse, its host's addresses included (every hop is
    checked again when the job fetches it)."""
    refused = f"URI for web-download does not pass filtering: {uri}"
    uri_rules = uri_filter(rt.settings)
    try:
        url = uri_rules.check(uri)
        await uri_rules.address_for(url)
    except UriRefused as exc:
        raise BadRequest(f"{refused}: {exc.message}") from None
    except SourceUnavailable:
        pass  # does not resolve now: the job will say so if it still does not


# -- the job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    image_id: str
    task_id: str
    method: str
    uri: str | None
    stores: list[str]  # an import's first store, then those it is copied to
    owner: str | None
    all_must_succeed: bool = True
    failed_before: tuple[str, ...] = ()  # os_glance_failed_import's stores kept by a copy

    @property
    def copy_targets(self) -> list[str]:
        return self.stores if self.method == "copy-image" else self.stores[1:]


async def _run(rt: Runtime, job: _Job) -> None:
    """Import (into the first store), then copy to the others; record each result and put
    things back on failure (never raises but for cancellation)."""
    if job.method != "copy-image":
        size = await _import(rt, job)
        if size is None:
            return
        if not job.copy_targets:
            await _close_task(rt, job, "success", f"Copied {size // MiB} MiB")
            return
    await _copy(rt, job)


async def _import(rt: Runtime, job: _Job) -> int | None:
    """The data into ``job.stores[0]``, the image ``active``: its size, or None when the
    import failed (the image put back, the task failed). Re-raises cancellation."""
    stored: StoredObject | None = None
    try:
        await rt.db(rt.tasks.change, job.task_id, ["pending"], "processing")
        if job.method == "glance-direct":
            stored, values = await _move_stage(rt, job)
        else:
            stored, values = await _download(rt, job)
        rest = job.copy_targets
        await rt.db(rt.registry.update, job.image_id, {**values, "status": "active"},
                    {IMPORTING_TO: ",".join(rest), FAILED_IMPORT: ""},
                    [] if rest else [IMPORT_TASK], expected_status=["importing"])
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            if stored is not None:
                await _delete_quietly(rt, job.stores[0], stored.location)
            await _put_back(rt, job, exc)
        if not isinstance(exc, Exception):
            raise  # a cancellation: the job's scope (or the nursery) takes it
        return None
    size: int = values["size"]
    log.info("IMPORTED image=%s method=%s size=%d task=%s", job.image_id, job.method, size,
             job.task_id)
    if job.method == "glance-direct":
        try:
            await rt.staging.discard(job.image_id)
        except Exception:
            log.exception("image %s is active but its stage could not be removed",
                          job.image_id)
    return size


async def _copy(rt: Runtime, job: _Job) -> None:
    """Copy the active image to each of ``job.copy_targets`` in turn (``copies.copy_to``),
    keeping ``os_glance_importing_to_stores`` / ``os_glance_failed_import`` current; then
    close the task. With ``all_must_succeed`` the first failure ends the job and removes the
    copies it made."""
    targets = job.copy_targets
    done: list[str] = []
    failed: list[str] = []
    copying: list[str] = []  # the store being copied to, when interrupted
    reason = ""
    try:
        if job.method == "copy-image":
            await rt.db(rt.tasks.change, job.task_id, ["pending"], "processing")
        for n, store_id in enumerate(targets):
            copying[:] = [store_id]
            try:
                await copies.copy_to(rt, job.image_id, store_id)
                done.append(store_id)
            except Exception as exc:
                failed.append(store_id)
                reason = f"Copy to store '{store_id}' failed: {_reason(exc)}"
                _log_failure(job, reason, exc)
                if job.all_must_succeed:
                    break
            copying.clear()
            await _set_progress(rt, job, targets[n + 1:], failed)
    except BaseException as exc:  # cancelled (image deleted, shutdown), or the registry failed
        with trio.CancelScope(shield=True):
            await _end_copy(rt, job, [*failed, *copying], "failure", _reason(exc))
        if not isinstance(exc, Exception):
            raise
        return
    with trio.CancelScope(shield=True):
        if failed and job.all_must_succeed:
            for store_id in done:  # all or nothing, as Glance reverts every store's import
                await copies.discard(rt, job.image_id, store_id)
            await _end_copy(rt, job, failed, "failure", reason)
            return
        image = await _current(rt, job.image_id)
        size = image.size if image is not None and image.size is not None else 0
        copied = f"Copied {size // MiB} MiB to {len(done)} store(s)"
        message = f"{copied}; {reason}" if failed else copied
        await _end_copy(rt, job, failed, "success", message)


async def _set_progress(rt: Runtime, job: _Job, pending: list[str], failed: list[str]) -> None:
    """The stores still to copy to, and those that failed, on the image (as Glance shows
    them while it works); a deleted image has nothing to show it on."""
    try:
        await rt.db(rt.registry.update, job.image_id, None,
                    {IMPORTING_TO: ",".join(pending),
                     FAILED_IMPORT: ",".join([*job.failed_before, *failed])})
    except NotFound:
        pass


async def _end_copy(
    rt: Runtime, job: _Job, failed: list[str], status: str, message: str
) -> None:
    """The copies are over: no store is pending, ``failed`` named, the import lock
    (``os_glance_import_task``) dropped, the task closed. Never raises."""
    try:
        await rt.db(rt.registry.update, job.image_id, None,
                    {IMPORTING_TO: "", FAILED_IMPORT: ",".join([*job.failed_before, *failed])},
                    [IMPORT_TASK])
    except NotFound:
        pass  # the image was deleted: that stopped the job
    except Exception:
        log.exception("could not record the end of the copies of image %s", job.image_id)
    await _close_task(rt, job, status, message)


async def _close_task(rt: Runtime, job: _Job, status: str, message: str) -> None:
    """Mark the job's task ``status`` with ``message``. Never raises."""
    result = {"image_id": job.image_id} if status == "success" else None
    try:
        await rt.db(rt.tasks.change, job.task_id, UNFINISHED, status, message=message,
                    result=result, expires_at=rt.tasks.clock() + TASK_TIME_TO_LIVE)
    except (NotFound, Conflict):
        pass  # already closed
    except Exception:
        log.exception("could not close import task %s of image %s", job.task_id, job.image_id)
    if status == "success":
        log.info("IMPORT DONE image=%s task=%s: %s", job.image_id, job.task_id, message)


async def _current(rt: Runtime, image_id: str) -> ImageRecord | None:
    try:
        return await rt.db(rt.registry.get, image_id)
    except Exception:
        return None


def _log_failure(job: _Job, reason: str, exc: BaseException) -> None:
    if isinstance(exc, Exception) and not isinstance(exc, StreamdError):
        log.error("import of image %s (task %s): %s", job.image_id, job.task_id, reason,
                  exc_info=exc)
    else:
        log.warning("IMPORT FAILED image=%s task=%s: %s", job.image_id, job.task_id, reason)


async def _move_stage(rt: Runtime, job: _Job) -> tuple[StoredObject, dict[str, Any]]:
    if await stage_parts.sealable(rt, job.image_id) is not None:
        await stage_parts.seal(rt, job.image_id)  # staged in parts: hashed now, as a whole
    stage = await rt.staging.stage(job.image_id)
    if stage is None or stage.digests is None:
        raise Conflict(f"The staged data of image {job.image_id} is gone or incomplete; "
                       "stage it again")
    image = await rt.db(rt.registry.get, job.image_id)
    inspection = stage.digests.inspection
    if inspection is None and disk_formats.acceptor(rt.settings, image.disk_format,
                                                    image.container_format) is not None:
        inspection = await _inspect_stage(rt, job.image_id)  # staged before stages were
    virtual_size = None if inspection is None else disk_formats.judge(rt.settings, image,
                                                                      inspection)
    store = rt.stores.get(job.stores[0])
    stored = await rt.staging.move_into(store, job.image_id, stage.digests)
    return stored, registry_values(store.name, stored.location, stage.size, stage.digests,
                                   virtual_size=virtual_size)


async def _inspect_stage(rt: Runtime, image_id: str) -> DiskInspection:
    """Inspect a stage recorded without its inspection (one more read of it)."""
    inspector = DiskInspector()
    async with contextlib.aclosing(rt.staging.read(image_id)) as chunks:
        async for chunk in chunks:
            inspector.eat(chunk)
    return inspector.finish()


async def _download(rt: Runtime, job: _Job) -> tuple[StoredObject, dict[str, Any]]:
    settings = rt.settings
    assert job.uri is not None
    quota_left = await quotas.remaining_bytes(rt, job.owner)
    cap = quotas.ByteCap(settings.image_size_cap, quota=quota_left)
    store = rt.stores.get(job.stores[0])
    image = await rt.db(rt.registry.get, job.image_id)
    async with open_web_source(job.uri, uri_filter(settings),
                               max_redirects=settings.web_download_max_redirects,
                               read_timeout=settings.upload_idle_timeout) as source:
        try:
            result = await rt.store_stream(
                source, store, key=job.image_id, size_cap=cap.size_cap,
                expected_size=source.content_length,
                accept=disk_formats.acceptor(settings, image.disk_format,
                                             image.container_format),
            )
        except SizeCapExceeded:
            if cap.set_by_quota:
                assert quota_left is not None
                raise quotas.size_quota_exceeded(rt, job.owner, quota_left,
                                                 source.content_length) from None
            raise
    return StoredObject(result.location, result.size), registry_values(
        store.name, result.location, result.size, result,
        virtual_size=disk_formats.stored_virtual_size(settings, image, result.inspection),
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StreamdError):
        return exc.message
    if isinstance(exc, Exception):
        return "The import failed because of an internal error; see the server log."
    return "The import was interrupted (the server is stopping, or the image was deleted)."


async def _put_back(rt: Runtime, job: _Job, exc: BaseException) -> None:
    """After a failed import: the image to ``uploading`` (stage still there) or ``queued``
    (a copy-image's stays active), ``os_glance_failed_import`` set, and the task failed with
    the reason. Never raises."""
    reason = _reason(exc)
    _log_failure(job, reason, exc)
    if job.method == "copy-image":
        await _end_copy(rt, job, job.stores, "failure", reason)
        return
    refused = isinstance(exc, disk_formats.ImageRefused)
    try:
        # refused data is not kept: the stage goes, the image is queued for a valid one
        await revert_importing(rt, job.image_id, ",".join(job.stores),
                               keep_stage=job.method == "glance-direct" and not refused)
        if refused and job.method == "glance-direct":
            await rt.staging.discard(job.image_id)
    except Exception:
        log.exception("could not put image %s back after its import failed", job.image_id)
    await _close_task(rt, job, "failure", reason)


async def revert_importing(rt: Runtime, image_id: str, stores: str, *, keep_stage: bool) -> None:
    """``importing`` back to ``uploading`` if ``keep_stage`` and a stage is there (it can be
    imported again), else to ``queued``; ``os_glance_failed_import`` names ``stores``.

    After a failed import, and at start-up for an import a crash interrupted."""
    staged = await rt.staging.stage(image_id) if keep_stage else None
    values: dict[str, Any] = {"status": "uploading" if staged is not None else "queued"}
    if staged is None or not staged.complete:
        values["size"] = None
    try:
        await rt.db(rt.registry.update, image_id, values,
                    {IMPORTING_TO: "", FAILED_IMPORT: stores}, [IMPORT_TASK],
                    expected_status=["importing"])
    except (NotFound, Conflict):
        pass  # deleted meanwhile, or no longer importing


async def _delete_quietly(rt: Runtime, store_id: str, location: str) -> None:
    try:
        await rt.stores.holding(store_id).delete(location)
    except Exception:
        log.exception("could not remove the data of a failed import at %s", location)


# -- image deletion ----------------------------------------------------------------------------


async def forget_image(rt: Runtime, image: ImageRecord) -> None:
    """Stop an import or copy into ``image`` and remove its stage: the image is being deleted.

    Runs after the upload/stage into it was cancelled (``transfers.delete_data``). An import
    that completed, or a copy that was recorded, while being stopped left data the caller's
    ``image`` does not know of: it is removed here. (A copy stopped before it was recorded
    removes its own object.)
    """
    await rt.jobs.stop(image.id)
    await rt.staging.discard(image.id)
    try:
        current = await rt.db(rt.registry.get, image.id)
    except NotFound:
        return
    for copy in current.locations:
        if copy not in image.locations:
            await rt.stores.holding(copy.store).delete(copy.location)

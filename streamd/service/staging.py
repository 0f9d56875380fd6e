"""Staging image data for an import: ``PUT`` and ``HEAD /v2/images/{id}/stage``.

As Glance: the first stage into a ``queued`` image makes it ``uploading``; the data goes to
the staging area (``streamd.io.staging``) through the same pipeline as an upload
(``store_stream``), so md5, ``os_hash_algo`` and xxh3 are computed while it arrives; once
all of it is there the image's ``size`` is set and ``POST …/import`` with ``glance-direct``
moves it into the store. A complete stage cannot be staged again (409).

Beyond Glance, a stage is resumable:

- a request that is cut off (client gone, or silent for ``upload_idle_timeout``) keeps what
  arrived; the image stays ``uploading`` and cannot be imported until the rest is staged;
- ``HEAD`` tells how much is staged (``StageProgress``);
- ``PUT`` with ``Content-Range: bytes START-END/TOTAL`` appends from START, which must be
  the staged size (else 416 naming it); a ``PUT`` without one into an incomplete stage
  starts it again from byte 0;
- stages left unchanged for ``stage_max_age`` seconds are removed and their image queued
  again (``reap_stale_stages``, run by a periodic job: ``streamd.service.periodic``).

With several API nodes, a stage lives on the node that received it: that node records
itself on the image (``os_glance_stage_host``, ``streamd.service.stage_host``), imports
through other nodes are sent to it, and a stage request holds the image's ``stage`` lease
(``streamd.service.leases``), so two nodes never stage one image at once. A resume must go
to the node that holds the stage (another one answers 409 naming it); a ``PUT`` without
``Content-Range`` starts the stage again wherever it arrives, and the node that held it
drops its copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Gone, NotFound
from streamd.io import ByteSource, SizeCapExceeded
from streamd.io.inspection import DiskInspection
from streamd.io.sources import ChainedSource, EndOnAbort
from streamd.io.staging import Stage, StagedDigests, StageOffsetMismatch
from streamd.registry import ImageRecord
from streamd.service import quotas
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime
from streamd.service.stage_host import stage_marks, staged_elsewhere

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContentRange:
    """``Content-Range: bytes START-END/TOTAL`` of a stage request (END inclusive)."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class StageProgress:
    """How much of an image is staged: ``staged`` bytes of ``total`` (None: not said)."""

    staged: int
    total: int | None
    complete: bool


def _progress(stage: Stage | None) -> StageProgress:
    if stage is None:
        return StageProgress(0, None, False)
    return StageProgress(stage.size, stage.total, stage.complete)


async def _stageable(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    record = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, record, "stage data for")
    return record


async def progress(rt: Runtime, ctx: RequestContext, image_id: str) -> StageProgress:
    """What is staged for an image the caller may stage data for."""
    await _stageable(rt, ctx, image_id)
    return _progress(await rt.staging.stage(image_id))


async def stage(
    rt: Runtime,
    ctx: RequestContext,
    image_id: str,
    source: ByteSource,
    *,
    size: int | None,
    content_range: ContentRange | None = None,
) -> StageProgress:
    """Stage ``source`` (the whole image, or the ``content_range`` part of it).

    ``size`` is the announced body length (Content-Length), None when chunked. Raises
    NotFound, Forbidden, BadRequest, Conflict (another request or import holds the image, a
    complete stage, a status that cannot be staged into), StageOffsetMismatch (416),
    TooLarge (image_size_cap; the stage is then dropped and the image queued again),
    Gone (deleted meanwhile), ServiceUnavailable, StoreFull; and the request body's
    SourceAborted once what arrived is kept.
    """
    settings = rt.settings
    record = await _stageable(rt, ctx, image_id)
    if content_range is not None:
        if size is not None and size != content_range.length:
            raise BadRequest(
                f"Content-Length {size} does not match Content-Range bytes "
                f"{content_range.start}-{content_range.end}, which is {content_range.length} "
                "bytes long."
            )
        start, total = content_range.start, content_range.total
        body_cap: int | None = content_range.end + 1
    else:
        start, total, body_cap = 0, size, None
    if total is not None and total > settings.image_size_cap:
        raise SizeCapExceeded(
            f"The incoming image is too large: {total} bytes announced, this cloud's limit "
            f"(image_size_cap) is {settings.image_size_cap} bytes."
        )
    # one request at a time: in this process (and its workers), then across nodes; a stage
    # whose lease is lost (the image deleted through another node) is cancelled, as by a
    # deletion here, and what it staged removed
    with rt.jobs.claim(image_id, "stage"):
        async with rt.leases.hold("stage", image_id,
                                  on_lost=lambda _: rt.transfers.cancel_upload(image_id)
                                  ) as lease:
            try:
                return await _stage_claimed(rt, record, source, size, content_range, start,
                                            total, body_cap)
            finally:
                if lease.lost is not None:
                    with trio.CancelScope(shield=True):
                        await rt.staging.discard(image_id)


async def _stage_claimed(
    rt: Runtime, record: ImageRecord, source: ByteSource, size: int | None,
    content_range: ContentRange | None, start: int, total: int | None, body_cap: int | None,
) -> StageProgress:
    """``stage`` once this node holds the image for staging."""
    image_id = record.id
    current = await rt.staging.stage(image_id)
    # the owner's staged-bytes quota, before any data is accepted and then as a cap
    left = await quotas.remaining_stage_bytes(rt, record.owner)
    if left is not None:
        resumed = start if current is not None and record.status == "uploading" else 0
        left += current.size - resumed if current is not None else 0  # replaced bytes
        incoming = total - start if total is not None else size
        if left == 0 or (incoming is not None and incoming > left):
            raise quotas.stage_quota_exceeded(rt, record.owner, left)
    if record.status == "queued":
        if start != 0:
            raise StageOffsetMismatch(
                f"Nothing is staged for image {image_id}: start at offset 0, not {start}.",
                expected=0,
            )
        # this node holds the stage from now: imports through other nodes are sent here
        await rt.db(rt.registry.update, image_id, {"status": "uploading"},
                    stage_marks(rt.settings), expected_status=["queued"])
        if current is not None:  # left by an earlier stage of an image queued again
            await rt.staging.discard(image_id)
    elif record.status == "uploading":
        elsewhere = staged_elsewhere(rt.settings, record)
        if elsewhere is not None and current is not None:
            await rt.staging.discard(image_id)  # staged again on another node since
            current = None
        if elsewhere is not None and content_range is not None:
            raise Conflict(
                f"The data of image {image_id} is being staged on another API node "
                f"({elsewhere}): resume there, or start again here with a PUT without "
                "Content-Range."
            )
        if current is not None and current.complete:
            raise Conflict(
                f"Image status transition from uploading to uploading is not allowed: all "
                f"{current.size} bytes of image {image_id} are staged. Import them "
                f"(POST /v2/images/{image_id}/import, glance-direct) or delete the image."
            )
        staged = current.size if current is not None else 0
        if content_range is None:
            if current is not None:  # a plain PUT starts an incomplete stage again
                await rt.staging.discard(image_id)
            marks = stage_marks(rt.settings)
            if any(record.properties.get(k) != v for k, v in marks.items()):
                await rt.db(rt.registry.update, image_id, set_properties=marks,
                            expected_status=["uploading"])
        elif start != staged:
            raise StageOffsetMismatch(
                f"{staged} bytes of image {image_id} are staged: resume at offset "
                f"{staged} (Content-Range: bytes {staged}-END/TOTAL), not at {start}.",
                expected=staged,
            )
        elif current is not None and current.total not in (None, total):
            raise BadRequest(
                f"Content-Range says image {image_id} is {total} bytes long; its stage "
                f"was started as {current.total} bytes. Send the same total, or start "
                "again with a PUT without Content-Range."
            )
    else:
        raise Conflict(
            f"Image status transition from {record.status} to uploading is not allowed"
        )
    return await _stage_body(rt, image_id, source, start, total, body_cap,
                             quota_cap=None if left is None else start + left)


async def _stage_body(
    rt: Runtime, image_id: str, source: ByteSource, start: int, total: int | None,
    body_cap: int | None, *, quota_cap: int | None = None,
) -> StageProgress:
    settings = rt.settings
    cap = quotas.ByteCap(settings.image_size_cap, quota=quota_cap, body=body_cap)
    body = EndOnAbort(source)
    appender = rt.staging.appender(image_id, start)
    with rt.transfers.slot(), rt.transfers.uploading(image_id) as scope:
        try:
            async with rt.staging.prefix(image_id, start) as prefix:
                # the stage takes any bytes (as Glance): what they are is recorded with the
                # digests, and the import judges it against the image's disk_format
                result = await rt.store_stream(
                    ChainedSource(prefix, body), appender, key=image_id, size_cap=cap.size_cap,
                    accept=_record_only if settings.inspect_image_data else None,
                )
        except SizeCapExceeded:
            with trio.CancelScope(shield=True):
                if cap.set_by_quota:
                    assert quota_cap is not None
                    owner = (await rt.db(rt.registry.get, image_id)).owner
                    await _drop(rt, image_id)  # a stage past the quota would only hold it
                    raise quotas.stage_quota_exceeded(rt, owner, quota_cap - start) from None
                if body_cap is not None and body_cap <= settings.image_size_cap:
                    await rt.staging.record(image_id, total=total)
                    raise BadRequest(
                        f"The body is longer than its Content-Range says; {appender.end} bytes "
                        f"are staged: resume at offset {appender.end}."
                    ) from None
                await _drop(rt, image_id)
            raise
        except BaseException:
            with trio.CancelScope(shield=True):
                if not scope.cancel_called:  # cancelled: the image is being deleted
                    await rt.staging.record(image_id, total=total)
            raise
        staged = appender.end
        complete = body.aborted is None and (total is None or staged == total)
        if complete:
            digests = StagedDigests(checksum=result.checksum, os_hash_algo=result.os_hash_algo,
                                    os_hash_value=result.os_hash_value, xxh3=result.xxh3,
                                    inspection=result.inspection)
            await rt.staging.record(image_id, total=staged, digests=digests)
            try:
                await rt.db(rt.registry.update, image_id, {"size": staged},
                            expected_status=["uploading"])
            except NotFound:
                raise _deleted_during_stage(image_id) from None
        else:
            await rt.staging.record(image_id, total=total)
    if scope.cancelled_caught:
        raise _deleted_during_stage(image_id)
    log.info("STAGE image=%s offset=%d staged=%d total=%s%s", image_id, start, staged, total,
             " complete" if complete else "")
    if body.aborted is not None:
        raise body.aborted  # what arrived is kept; the client (if still there) hears why
    return StageProgress(staged, staged if complete else total, complete)


def _record_only(inspection: DiskInspection) -> None:
    """A stage keeps whatever it is sent: the inspection is only recorded."""


def _deleted_during_stage(image_id: str) -> Gone:
    return Gone(f"Image {image_id} could not be found after staging. The image may have been "
                "deleted meanwhile; the data staged has been removed.")


async def _drop(rt: Runtime, image_id: str) -> None:
    """Remove the stage and put the image back to ``queued`` (it was ``uploading``)."""
    await rt.staging.discard(image_id)
    try:
        await rt.db(rt.registry.transition, image_id, "uploading", "queued", {"size": None})
    except (NotFound, Conflict):
        pass


# -- reaping ----------------------------------------------------------------------------------


async def reap_stale_stages(rt: Runtime, *, now: float) -> int:
    """Remove stages unchanged for ``stage_max_age`` seconds at ``now``; return how many.

    Their images go back to ``queued``, unless the image has been staged again on another
    node since (only this node's copy goes). A stage being written or imported in this
    process is left alone, and so is an image being staged on another node (its ``stage``
    lease is live) or ``importing``.
    """
    reaped = 0
    for image_id in await rt.staging.stale(older_than=rt.settings.stage_max_age, now=now):
        if rt.jobs.busy(image_id):
            continue
        with rt.jobs.claim(image_id, "stage reaping"):
            lease = await rt.leases.take_over("stage", image_id)
            if lease is None:
                continue  # being staged now, here in another worker or on another node
            try:
                reaped += await _reap(rt, image_id)
            finally:
                await lease.release()
    if reaped:
        log.warning("removed %d stage(s) unchanged for more than %gs (stage_max_age); their "
                    "images are queued again", reaped, rt.settings.stage_max_age)
    return reaped


async def _reap(rt: Runtime, image_id: str) -> int:
    """Reap one stale stage (its ``stage`` lease held); 1 if it went."""
    try:
        image = await rt.db(rt.registry.get, image_id)
    except NotFound:
        image = None  # the image is gone: its stage is an orphan
    if image is not None and staged_elsewhere(rt.settings, image) is None:
        try:
            await rt.db(rt.registry.transition, image_id, "uploading", "queued",
                        {"size": None})
        except NotFound:
            pass
        except Conflict:
            if (await rt.db(rt.registry.get, image_id)).status == "importing":
                return 0
    await rt.staging.discard(image_id)
    return 1

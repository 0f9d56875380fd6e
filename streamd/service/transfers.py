"""Uploads of image data: the registry's status changes around the data plane.

An upload is three steps, each one a conditional status change or the pipeline:

1. ``queued -> saving``: only one upload can win; a second one gets 409.
2. ``store_stream``: body -> store, md5 + ``os_hash_algo`` + xxh3 and the disk-format
   inspection in the same pass; data that its ``disk_format`` refuses
   (``streamd.service.disk_formats``: 415) is never committed.
3. ``saving -> active`` with size, digests and location, in one conditional update.

Whatever stops it in between (client gone, short body, size cap, full disk, store error,
server shutdown, the image deleted) puts the image back to ``queued`` (retryable) and
leaves no data behind: the store removes its partial object, and this module removes a
complete one that the registry did not take. What a crash leaves (``saving`` rows, temp
files) is repaired at start-up (``streamd.service.repair``, ``open_stores``).

Transfers are admitted, not queued: past ``max_transfers`` the caller gets 503 with
``Retry-After`` at once (``streamd.service.transfer_slots``).
"""

from __future__ import annotations

import logging

import trio

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Gone, NotFound
from streamd.io import (
    ByteSource,
    SizeCapExceeded,
    Store,
    UploadResult,
)
from streamd.registry import ImageRecord
from streamd.service import disk_formats, quotas, transfer_metrics
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime
from streamd.service.stored_data import registry_values

log = logging.getLogger(__name__)

REQUIRED_FORMATS = ("disk_format", "container_format")  # Glance refuses data without them


async def _get_visible(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    return await visible_image(rt, ctx, image_id)  # members of a shared image see it too


# -- upload ------------------------------------------------------------------------------------


async def upload(
    rt: Runtime,
    ctx: RequestContext,
    image_id: str,
    source: ByteSource,
    *,
    size: int | None,
    store_id: str | None = None,
) -> ImageRecord:
    """Store ``source`` as the data of a queued image and make it active.

    ``size`` is the announced length (Content-Length), ``None`` when unknown (chunked);
    a body of another length fails. ``store_id`` names the store (``X-Image-Meta-Store``;
    None: the default store); an unknown one is a 400 before anything changes. Raises
    NotFound, Forbidden, BadRequest, Conflict (not queued, or another upload won),
    ServiceUnavailable (too many transfers), TooLarge (size cap), QuotaExceeded (the
    owner's quota_image_size_total), Gone (deleted meanwhile), or the pipeline's errors; in
    every case but success the image is ``queued`` again and no data is left.
    """
    settings = rt.settings
    record = await _get_visible(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, record, "upload data to")
    store = rt.stores.choose(store_id)
    if record.status != "queued":
        raise Conflict(f"Image status transition from {record.status} to saving is not allowed")
    missing = [name for name in REQUIRED_FORMATS if not getattr(record, name)]
    if missing:
        raise BadRequest(
            f"Propert{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)} must be set "
            "prior to saving data."
        )
    if size is not None and size > settings.image_size_cap:
        raise SizeCapExceeded(
            f"The incoming image is too large: {size} bytes announced, this cloud's limit "
            f"(image_size_cap) is {settings.image_size_cap} bytes."
        )
    # the owner's byte quota, before any data is accepted and then as the pipeline's cap
    quota_left = await quotas.remaining_bytes(rt, record.owner)
    if quota_left is not None and (quota_left == 0 or (size is not None and size > quota_left)):
        raise quotas.size_quota_exceeded(rt, record.owner, quota_left, size)
    cap = quotas.ByteCap(settings.image_size_cap, quota=quota_left)
    # the lease first: from the moment the image is `saving`, other nodes' repairs must see
    # that this node is at work on it; lost (the image deleted through another node), the
    # upload is cancelled as by a deletion here
    try:
        with rt.transfers.slot():
            async with rt.leases.hold("upload", image_id,
                                      on_lost=lambda _: rt.transfers.cancel_upload(image_id)):
                record, scope = await _upload_leased(rt, image_id, source, store, size, cap,
                                                     quota_left, record)
        if scope.cancelled_caught:  # cancelled by delete_data() or a lost lease: image gone
            raise _deleted_during_upload(image_id)
    except BaseException as exc:
        transfer_metrics.failed("upload", image_id, store.name, exc)
        raise
    transfer_metrics.written(store.name, record.size or 0)
    log.info("UPLOAD image=%s size=%d store=%s", image_id, record.size, record.store)
    return record


async def _upload_leased(
    rt: Runtime, image_id: str, source: ByteSource, store: Store, size: int | None,
    cap: quotas.ByteCap, quota_left: int | None, record: ImageRecord,
) -> tuple[ImageRecord, trio.CancelScope]:
    """The upload's steps while it holds the image's ``upload`` lease."""
    await rt.db(rt.registry.transition, image_id, "queued", "saving")
    # entered only once this upload owns the image: a loser must not replace the scope
    with rt.transfers.uploading(image_id) as scope:
        stored: UploadResult | None = None
        try:
            stored = await rt.store_stream(
                source, store, key=image_id, size_cap=cap.size_cap, expected_size=size,
                accept=disk_formats.acceptor(rt.settings, record.disk_format,
                                             record.container_format),
            )
            values = registry_values(store.name, stored.location, stored.size, stored,
                                     virtual_size=disk_formats.stored_virtual_size(
                                         rt.settings, record, stored.inspection))
            record = await rt.db(rt.registry.transition, image_id, "saving", "active", values)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                # cancelled by delete_data(): the row is about to go, whatever its status
                await _abandon(rt, image_id, store, stored,
                               keep_if_active=not scope.cancel_called)
            if stored is not None and isinstance(exc, NotFound | Conflict):
                # the final status change found the row gone (deleted) or changed
                raise _deleted_during_upload(image_id) from None
            if isinstance(exc, SizeCapExceeded) and cap.set_by_quota:
                assert quota_left is not None
                raise quotas.size_quota_exceeded(rt, record.owner, quota_left) from None
            raise
    return record, scope


def _deleted_during_upload(image_id: str) -> Gone:
    return Gone(
        f"Image {image_id} could not be found after upload. The image may have been "
        "deleted during the upload; the data uploaded has been removed."
    )


async def _abandon(
    rt: Runtime, image_id: str, store: Store, stored: UploadResult | None, *,
    keep_if_active: bool,
) -> None:
    """Undo a failed upload: the image back to ``queued`` and ``stored``'s data removed.

    With ``keep_if_active`` the data stays if the image went active with it after all (a
    cancellation that arrived while the final status change was being made).
    """
    keep = False
    try:
        await rt.db(rt.registry.transition, image_id, "saving", "queued")
    except NotFound:
        pass  # deleted meanwhile
    except Conflict:
        try:
            current = await rt.db(rt.registry.get, image_id)
            keep = (keep_if_active and stored is not None
                    and current.location == stored.location)
        except NotFound:
            pass
    except Exception:
        # the registry is unreachable: the row stays `saving` until the next start-up
        log.exception("could not put image %s back to queued after a failed upload", image_id)
    if stored is not None and not keep:
        try:
            await store.delete(stored.location)
        except Exception:
            log.exception("could not remove the data of failed upload %s", image_id)


async def delete_data(rt: Runtime, record: ImageRecord) -> None:
    """Remove the data of an image that is being deleted (before its row goes).

    An upload into it that is running in this process is cancelled (it answers 410 and
    removes what it wrote); one running on another node finds the row gone when it
    finishes and removes its data itself.
    """
    rt.transfers.cancel_upload(record.id)
    for copy in record.locations:
        await rt.stores.holding(copy.store).delete(copy.location)

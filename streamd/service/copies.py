"""Copies of an image's data in more than one store: making one and removing one.

Making one (copy-image, and the stores after the first of an import): the data is read
from the copies the image has (the first whose store answers, going on from the next at the
same byte if a store fails: ``downloads.read_data``) and streamed through the upload
pipeline into the target store, so memory stays ``chunk_size × queue_depth`` plus the
reader's buffer whatever the image size, and no byte touches local disk. The pipeline
hashes what it wrote; the copy counts only if its size and digests equal the ones recorded
when the image was uploaded. Then it is recorded (``add_location``); a copy that fails any
of that is deleted from the target store.

Removing one (``DELETE /v2/stores/{store_id}/{image_id}``) keeps Glance's order of checks
and answers; the last copy is never removed (delete the image instead).
"""

from __future__ import annotations

import logging

import trio

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import Conflict, Forbidden, NotFound, StreamdError
from streamd.io import StoreError, UploadResult
from streamd.io.stores.chunks import ChunkCursor
from streamd.registry import ImageRecord
from streamd.service import disk_formats, downloads
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

def already_present(store_id: str) -> str:
    """Glance's words (400) for a copy into a store that has the image."""
    return f"Image is already present at store '{store_id}'"


async def copy_to(rt: Runtime, image_id: str, store_id: str) -> ImageRecord:
    """Copy the data of active image ``image_id`` into ``store_id``, verify it, record it.

    Raises Conflict (not active, or already in ``store_id``), NotFound (deleted), the
    stores' errors, or StoreError when the bytes copied differ from the recorded ones; in
    every case but success, nothing of the copy is left in ``store_id``.
    """
    image = await rt.db(rt.registry.get, image_id)  # the copies there are now
    if image.status != "active" or not image.locations:
        raise Conflict(f"Only images with status active can be copied; image {image_id} is "
                       f"{image.status}")
    if store_id in image.stores:
        raise Conflict(already_present(store_id))
    store = rt.stores.get(store_id)
    assert image.size is not None  # active
    # a transfer slot is held, as for a download: past max_transfers the copy fails (503)
    async with downloads.read_data(rt, image, 0, image.size) as chunks:
        # ChunkCursor is the ByteSource: it copies the reader's chunks into the pipeline's
        # judged again by its disk format, as Glance's copy-image does (the image may be older
        # than the inspection): a refused copy is never committed
        result = await rt.store_stream(ChunkCursor(chunks), store, key=image_id,
                                       size_cap=None, expected_size=image.size,
                                       accept=disk_formats.acceptor(rt.settings,
                                                                    image.disk_format,
                                                                    image.container_format))
    try:
        _verify(image, result, store_id)
        # a cancellation that arrives while the row is written is raised only after it
        # (abandon_on_cancel=False), at a later checkpoint: the copy is then recorded and kept
        recorded = await rt.db(rt.registry.add_location, image_id, store_id, result.location)
    except BaseException:
        with trio.CancelScope(shield=True):
            await _delete_quietly(store_id, rt, result.location)
        raise
    log.info("COPY image=%s store=%s size=%d location=%s", image_id, store_id, result.size,
             result.location)
    return recorded


def _verify(image: ImageRecord, result: UploadResult, store_id: str) -> None:
    """StoreError unless the bytes written are the image's: its size and every digest
    recorded (``os_hash_value`` only when computed with the same algorithm)."""
    wanted = {"size": image.size, "checksum": image.checksum, "xxh3": image.xxh3}
    if image.os_hash_algo == result.os_hash_algo:
        wanted["os_hash_value"] = image.os_hash_value
    differ = [name for name, value in wanted.items()
              if value is not None and getattr(result, name) != value]
    if differ:
        raise StoreError(
            f"The copy of image {image.id} to store '{store_id}' was discarded: its "
            f"{', '.join(differ)} differ from the image's (the data read from its stores is "
            "not the data that was uploaded). Its other copies are untouched.")


async def _delete_quietly(store_id: str, rt: Runtime, location: str) -> None:
    try:
        await rt.stores.holding(store_id).delete(location)
    except Exception:
        log.exception("could not remove a discarded copy at %s in store %s", location, store_id)


async def discard(rt: Runtime, image_id: str, store_id: str) -> None:
    """Forget the copy in ``store_id`` and delete its data (undoing a copy; never raises)."""
    try:
        image = await rt.db(rt.registry.get, image_id)
        copy = next((c for c in image.locations if c.store == store_id), None)
        if copy is None:
            return
        await rt.db(rt.registry.remove_location, image_id, store_id)
    except StreamdError as exc:
        log.warning("could not undo the copy of image %s to store %s: %s", image_id,
                    store_id, exc.message)
        return
    await _delete_quietly(store_id, rt, copy.location)


# -- DELETE /v2/stores/{store_id}/{image_id} ---------------------------------------------------


async def delete_from_store(
    rt: Runtime, ctx: RequestContext, store_id: str, image_id: str
) -> ImageRecord:
    """Remove the copy of ``image_id`` in ``store_id``; return the image with the rest.

    Glance's checks, in its order: 409 unknown store, 404 image, 403 policy
    (``delete_image_location``: admins), 409 not active, 403 the only copy (whatever store
    holds it), 404 not in that store. The registry row goes first, then the object: a
    download that chose the copy just before fails over to another one, and a store that
    cannot delete now leaves an object nobody points at (logged), never an image
    pointing at nothing.
    """
    if store_id not in rt.stores.ids:
        raise Conflict(f"The selected store {store_id} is not available on this node.")
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_may_delete_copy(ctx, image)
    if image.status != "active":
        raise Conflict("It's not allowed to remove image data from store if image status "
                       "is not 'active'")
    if len(image.locations) == 1:
        raise Forbidden("Cannot delete image data from the only store containing it. "
                        "Consider deleting the image instead.")
    copy = next((c for c in image.locations if c.store == store_id), None)
    if copy is None:
        raise NotFound(f"Image {image_id} is not stored in store {store_id}.")
    left = await rt.db(rt.registry.remove_location, image_id, store_id, ["active"])
    try:
        await rt.stores.holding(store_id).delete(copy.location)
    except StreamdError as exc:
        log.warning("DELETE COPY image=%s store=%s: the copy is forgotten but its data at %s "
                    "could not be deleted (%s)", image_id, store_id, copy.location, exc.message)
    log.info("DELETE COPY image=%s store=%s left=%s", image_id, store_id, ",".join(left.stores))
    return left

"""The parallel stage: ``PUT /v2/images/{id}/stage`` parts at any offset, from several
connections at once (a streamd extension, ``transfer_extensions``).

A part is ``Upload-Part: data`` with ``Content-Range: bytes START-END/TOTAL`` and those
bytes, or ``Upload-Part: zero`` with the same header and no body: a run of zeros declared,
not sent. Each part is durable when answered (``streamd.io.stage_parts``), and a part cut off
keeps the bytes that arrived, so ``HEAD …/stage`` (``Upload-Ranges``) tells a client exactly
what to send again. As for the sequential stage, the first part makes a ``queued`` image
``uploading`` on this node (``os_glance_stage_host``); the two kinds of stage do not mix.

Nothing is hashed while parts arrive (they come out of order): ``seal``, run by the
glance-direct import, checks that the parts cover the image without a hole, makes them the
sequential stage's file and computes md5, ``os_hash_algo`` and xxh3 (and inspects the
format) in one read, so the import goes on exactly as after a sequential stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, NotFound
from streamd.io import ByteSource, SizeCapExceeded
from streamd.io.inspection import DiskInspection
from streamd.io.stage_parts import PartsState
from streamd.io.staging import StagedDigests
from streamd.io.stores.base import check_key
from streamd.io.stores.discard import DiscardStore
from streamd.registry import ImageRecord
from streamd.service import quotas
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime
from streamd.service.stage_host import stage_marks, staged_elsewhere

log = logging.getLogger(__name__)


class ExtensionsOff(NotFound):
    """This server offers the plain Image API only (``transfer_extensions = false``)."""


@dataclass(frozen=True)
class Part:
    """One part: bytes ``[start, start + length)`` of a ``total``-byte image; ``zero``:
    declared zeros, no body."""

    start: int
    length: int
    total: int
    zero: bool


def ensure_enabled(rt: Runtime, what: str) -> None:
    if not rt.settings.transfer_extensions:
        raise ExtensionsOff(
            f"{what} is a streamd extension that this server has switched off "
            "(transfer_extensions = false); use the Image API's own calls."
        )


async def stage_part(
    rt: Runtime, ctx: RequestContext, image_id: str, source: ByteSource, part: Part
) -> PartsState:
    """Stage one part and return what the whole stage holds afterwards.

    Raises NotFound, Forbidden, BadRequest (a total unlike the first part's), Conflict (a
    sequential stage, the stage on another node, a status that cannot be staged into),
    TooLarge (image_size_cap), QuotaExceeded, ServiceUnavailable; and the body's
    SourceAborted once the bytes that arrived are staged.
    """
    ensure_enabled(rt, "Staging in parts (Upload-Part)")
    settings = rt.settings
    record = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, record, "stage data for")
    if part.total > settings.image_size_cap:
        raise SizeCapExceeded(
            f"The incoming image is too large: {part.total} bytes announced, this cloud's "
            f"limit (image_size_cap) is {settings.image_size_cap} bytes."
        )
    await _ensure_uploading(rt, record, part)
    with rt.transfers.slot():
        await rt.staging.parts.begin(image_id, part.total)
        if part.zero:
            await rt.staging.parts.zero(image_id, part.start, part.length)
            got = part.length
        else:
            got = await rt.staging.parts.write(image_id, part.start, part.length, source)
    after = await rt.staging.parts.state(image_id)
    if after is None:  # deleted meanwhile
        raise NotFound(f"Image {image_id} was deleted while its data was being staged.")
    log.info("STAGE PART image=%s offset=%d length=%d%s staged=%d/%d", image_id, part.start,
             got, " zero" if part.zero else "", after.staged, after.total)
    if got < part.length:
        raise BadRequest(
            f"The body ended after {got} of the {part.length} bytes its Content-Range says; "
            f"those are staged (HEAD …/stage lists them): send the rest."
        )
    return after


async def _ensure_uploading(rt: Runtime, record: ImageRecord, part: Part) -> None:
    """The image ``uploading`` with a parallel stage on this node, or the reason not."""
    image_id = record.id
    if record.status == "queued":
        left = await quotas.remaining_stage_bytes(rt, record.owner)
        if left is not None and part.total > left:
            raise quotas.stage_quota_exceeded(rt, record.owner, left)
        try:
            await rt.db(rt.registry.update, image_id, {"status": "uploading"},
                        stage_marks(rt.settings), expected_status=["queued"])
        except Conflict:  # another first part won: it must be uploading now
            record = await rt.db(rt.registry.get, image_id)
        else:
            return
    if record.status != "uploading":
        raise Conflict(
            f"Image status transition from {record.status} to uploading is not allowed"
        )
    elsewhere = staged_elsewhere(rt.settings, record)
    if elsewhere is not None:
        raise Conflict(f"The data of image {image_id} is being staged on another API node "
                       f"({elsewhere}): send the parts there.")
    if await rt.staging.stage(image_id) is not None:
        raise Conflict(f"Image {image_id} is being staged sequentially (PUT …/stage without "
                       "Upload-Part): finish that stage, or delete the image and start again.")


async def ensure_no_parts(rt: Runtime, image_id: str) -> None:
    """Conflict when ``image_id`` is being staged in parts: a sequential stage would mix."""
    if await sealable(rt, image_id) is not None:
        raise Conflict(f"Image {image_id} is being staged in parts (Upload-Part): send the "
                       "missing parts (HEAD …/stage lists what is staged), or delete the "
                       "image and start again.")


async def sealable(rt: Runtime, image_id: str) -> PartsState | None:
    """The parallel stage of ``image_id`` if it has one (whole or not)."""
    if not rt.settings.transfer_extensions or not _is_key(image_id):
        return None
    return await rt.staging.parts.state(image_id)


def _is_key(image_id: str) -> bool:
    """Whether ``image_id`` could name a stage at all (no image has an id that is no key: the
    lookup that follows answers 404 for it)."""
    try:
        check_key(image_id)
    except ValueError:
        return False
    return True


async def seal(rt: Runtime, image_id: str) -> None:
    """Turn a whole parallel stage into a complete sequential one: its digests computed and
    recorded, the image's ``size`` set. Conflict naming a hole when it is not whole."""
    state = await rt.staging.parts.seal(image_id, rt.staging.data_path(image_id))
    total = state.total
    await rt.staging.record(image_id, total=total)
    async with rt.staging.prefix(image_id, total) as source:
        result = await rt.store_stream(
            source, DiscardStore(), key=image_id, size_cap=None, expected_size=total,
            accept=_record_only if rt.settings.inspect_image_data else None,
        )
    digests = StagedDigests(checksum=result.checksum, os_hash_algo=result.os_hash_algo,
                            os_hash_value=result.os_hash_value, xxh3=result.xxh3,
                            inspection=result.inspection)
    await rt.staging.record(image_id, total=total, digests=digests)
    await rt.db(rt.registry.update, image_id, {"size": total}, expected_status=["importing"])
    log.info("STAGE SEALED image=%s size=%d", image_id, total)


def _record_only(inspection: DiskInspection) -> None:
    """A stage keeps whatever it is sent: the inspection is only recorded."""

"""Copy images — metadata, tags, data — from one Image API server to another (as Glance's
``glance-replicator``), and say what differs between two.

An image is matched by its id. One present on the target, active, with the same digests is
skipped (a re-run moves nothing); one left ``queued`` or ``uploading`` by a cut run is
resumed; one with other digests is reported, never overwritten. Data goes from ranged GETs on
the source straight into stage parts on the target when the target has streamd's extensions
(zero runs declared, not sent), else through one ``PUT …/file`` stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from streamd.sparse import Extent
from streamd.transfer import localfile
from streamd.transfer.api import READ_ONLY, ApiError, ImageAPI
from streamd.transfer.localfile import blocks, merge, subtract
from streamd.transfer.report import Reporter, Stats
from streamd.transfer.upload import PART, ImportFailed, wait_active

SAME, MISSING, DIFFERS, INCOMPLETE = "same", "missing", "differs", "incomplete"


@dataclass(frozen=True)
class Comparison:
    image_id: str
    name: str | None
    state: str  # SAME, MISSING, DIFFERS, INCOMPLETE (queued/uploading on the target)
    size: int | None


def _same(src: dict[str, Any], dst: dict[str, Any]) -> bool:
    if src.get("os_hash_value") and dst.get("os_hash_value"):
        return src["os_hash_value"] == dst["os_hash_value"]
    return src.get("checksum") is not None and src.get("checksum") == dst.get("checksum")


async def compare(src: ImageAPI, dst: ImageAPI) -> list[Comparison]:
    """Each active source image and how the target holds it."""
    found = []
    async for image in src.images():
        if image.get("status") != "active":
            continue
        other = await dst.image_or_none(image["id"])
        if other is None:
            state = MISSING
        elif other.get("status") in ("queued", "uploading", "importing"):
            state = INCOMPLETE
        else:
            state = SAME if _same(image, other) else DIFFERS
        found.append(Comparison(image["id"], image.get("name"), state, image.get("size")))
    return found


async def replicate(src: ImageAPI, dst: ImageAPI, reporter: Reporter, *, dry_run: bool = False,
                    connections: int = 4, only: set[str] | None = None,
                    images_at_once: int = 2) -> list[Stats]:
    """Copy what ``compare`` finds missing or incomplete, ``images_at_once`` images at a time
    (while one waits for its import or for a slow source, another moves); the statistics of
    each copy. The first failure ends the run (a re-run resumes from what is on the target).
    """
    todo: list[str] = []
    for item in await compare(src, dst):
        if only and item.image_id not in only:
            continue
        reporter.event(item.state if not dry_run or item.state in (SAME, DIFFERS)
                       else f"would copy ({item.state})", image_id=item.image_id,
                       name=item.name, size=item.size)
        if not dry_run and item.state not in (SAME, DIFFERS):
            todo.append(item.image_id)
    done: list[Stats] = []
    send, receive = trio.open_memory_channel[str](len(todo) or 1)
    for image_id in todo:
        send.send_nowait(image_id)
    send.close()

    async def worker() -> None:
        async for image_id in receive:
            done.append(await copy_image(src, dst, image_id, reporter,
                                         connections=connections))

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, min(images_at_once, len(todo)))):
            nursery.start_soon(worker)
    return done


def _fields(image: dict[str, Any]) -> dict[str, Any]:
    """What the target is told at creation: everything the server does not set itself."""
    return {k: v for k, v in image.items()
            if k not in READ_ONLY and not k.startswith("os_glance_") and v is not None
            and k != "tags"}


async def copy_image(src: ImageAPI, dst: ImageAPI, image_id: str, reporter: Reporter, *,
                     connections: int = 4) -> Stats:
    """One image from ``src`` to ``dst`` (made there with the same id), verified."""
    image = await src.image(image_id)
    stats = Stats(image_id=image_id, action="replicate", size=image.get("size") or 0)
    with stats.stage("prepare"):
        target = await dst.image_or_none(image_id)
        if target is None:
            target = await dst.create({**_fields(image), "id": image_id})
        missing_tags = set(image.get("tags", [])) - set(target.get("tags", []))
        await dst.add_tags(image_id, sorted(missing_tags))
        stats.extensions = await dst.discover()
        runs: list[Extent] = [Extent(0, stats.size, zero=False)] if stats.size else []
        if stats.extensions and await src.discover():
            runs = (await src.extents(image_id)).runs
    if stats.extensions:
        stats.connections = connections
        staged: list[tuple[int, int]] = []
        if target["status"] == "uploading":
            found = await dst.staged(image_id)
            staged = merge(found.ranges) if found.total == stats.size else []
            stats.resumed = sum(e - s for s, e in staged)
        with stats.stage("transfer"), reporter.progress(f"copy {image_id[:8]}", stats.size,
                                                        stats.resumed) as advance:
            await _parts(src, dst, image_id, runs, staged, stats, advance, connections)
        with stats.stage("import"):
            await dst.import_staged(image_id)
            copied = await wait_active(dst, image_id, 3600.0)
    else:
        if target["status"] != "queued":
            raise ApiError(409, f"image {image_id} is {target['status']} on the target; "
                           "delete it there to copy it again")
        with stats.stage("transfer"), reporter.progress(f"copy {image_id[:8]}",
                                                        stats.size) as advance:
            await dst.put_file(image_id, _stream(src, image_id, stats, advance), stats.size)
        copied = await dst.image(image_id)
    if not _same(image, copied):
        raise ImportFailed(f"image {image_id}: the copy's digests differ from the source's")
    reporter.event("copied", image_id=image_id, size=stats.size)
    return stats


async def _parts(src: ImageAPI, dst: ImageAPI, image_id: str, runs: list[Extent],
                 staged: list[tuple[int, int]], stats: Stats, advance: Any,
                 connections: int) -> None:
    total = stats.size
    data = [r for x in runs if not x.zero for r in subtract(x.start, x.end, staged)]
    zeros = [r for x in runs if x.zero for r in subtract(x.start, x.end, staged)]
    todo = [(s, e, False) for s, e in blocks(data, PART)] + [(s, e, True) for s, e in zeros]
    send, receive = trio.open_memory_channel[tuple[int, int, bool]](len(todo) or 1)
    for item in todo:
        send.send_nowait(item)
    send.close()

    async def worker() -> None:
        async for start, end, zero in receive:
            body: bytes | None = None
            if not zero:
                async with src.read(image_id, start, end) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        raise ApiError(r.status_code, r.text[:300])
                    body = await r.aread()
                if len(body) != end - start:
                    raise ApiError(502, f"bytes {start}-{end - 1}: the source sent "
                                   f"{len(body)} bytes")
                if localfile.is_zero(body):
                    body = None
            await dst.put_part(image_id, start, body, end - start, total)
            if body is None:
                stats.zero_skipped += end - start
            else:
                stats.moved += end - start
            advance(end - start)

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, min(connections, len(todo)))):
            nursery.start_soon(worker)


async def _stream(src: ImageAPI, image_id: str, stats: Stats, advance: Any
                  ) -> AsyncIterator[bytes]:
    async with src.read(image_id) as r:
        if r.status_code >= 400:
            await r.aread()
            raise ApiError(r.status_code, r.text[:300])
        async for chunk in r.aiter_raw():
            stats.moved += len(chunk)
            advance(len(chunk))
            yield chunk

"""Upload a local file as an image's data, and wait until it is active and verified.

With streamd's extensions: the file's data runs go as parts of a parallel stage over N
connections, its holes and zero MiBs as declared zero parts (nothing sent), parts already
staged (``HEAD …/stage``) are skipped, so an interrupted upload resumes where it stopped;
then a glance-direct import. Without them: one ``PUT …/file`` stream (plain Image API).
Either way the image's recorded digests must be the file's.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import trio

from streamd.transfer import localfile
from streamd.transfer.api import ApiError, ImageAPI
from streamd.transfer.localfile import VerificationFailed, blocks, merge, subtract
from streamd.transfer.report import Reporter, Stats

PART = 8 * 1024 * 1024  # one stage part: what a cut connection may have to send again
READ = 1024 * 1024  # one read of the one-stream upload
# seconds between looks at an importing image: soon at first (a small image is active in
# tens of ms, and replication waits for one image after another), then less often
IMPORT_POLL = (0.01, 1.5, 0.2)  # first wait, growth factor, longest wait


class ImportFailed(Exception):
    """The server did not make the image active from what was sent."""


async def upload(api: ImageAPI, src: Path, reporter: Reporter, *, image_id: str | None = None,
                 fields: Mapping[str, Any] | None = None, connections: int = 4,
                 part: int = PART, import_timeout: float = 3600.0,
                 verify: str = "auto") -> Stats:
    """Send ``src`` into ``image_id`` (a new image made of ``fields`` when None); then check
    what the server recorded against the file as ``verify`` says: "auto" the xxh3 a streamd
    server offers with the extents (else as "digest"), "digest" its ``checksum`` and sha512
    ``os_hash_value``, "none" only that the image is active."""
    size = (await trio.to_thread.run_sync(os.stat, src)).st_size
    stats = Stats(image_id=image_id or "", action="upload", size=size)
    with stats.stage("prepare"):
        if image_id is None:
            image = await api.create(fields or {})
            image_id = stats.image_id = image["id"]
            reporter.event("created", image_id=image_id)
        else:
            image = await api.image(image_id)
        stats.extensions = await api.discover()
    names = {"auto": ("xxh3_128",) if stats.extensions else ("md5", "sha512"),
             "digest": ("md5", "sha512"), "none": ()}[verify]
    async with trio.open_nursery() as nursery:
        digests: dict[str, str] = {}

        async def hash_local() -> None:  # overlaps the upload: the file is read twice anyway
            with stats.stage("hash"):
                digests.update(await trio.to_thread.run_sync(localfile.digests, src, names))

        if names:
            nursery.start_soon(hash_local)
        if stats.extensions:
            stats.connections = connections
            await _parallel(api, image_id, src, size, stats, reporter, connections, part,
                            status=image["status"])
            with stats.stage("import"):
                await api.import_staged(image_id)
                image = await wait_active(api, image_id, import_timeout)
        else:
            if image["status"] != "queued":
                raise ApiError(409, f"image {image_id} is {image['status']}; the plain Image "
                               "API uploads only into a queued image")
            reporter.event("upload", image_id=image_id, size=size, connections=1,
                           extensions=False)
            with stats.stage("transfer"):
                with reporter.progress(f"upload {image_id[:8]}", size) as advance:
                    await api.put_file(image_id, _chunks(src, stats, advance), size)
            image = await api.image(image_id)
    with stats.stage("verify"):
        if "xxh3_128" in digests:
            recorded = (await api.extents(image_id)).xxh3
            if recorded is None:  # a server that records none: the image's own digests
                digests.update(await trio.to_thread.run_sync(
                    localfile.digests, src, ("md5", "sha512")))
            elif recorded != digests["xxh3_128"]:
                raise VerificationFailed(f"image {image_id}: the server's xxh3 {recorded}, "
                                         f"the file's {digests['xxh3_128']}")
        _check(image, digests)
    reporter.event("verified", image_id=image_id, status=image["status"],
                   digest="+".join(digests) or "none")
    return stats


async def _parallel(api: ImageAPI, image_id: str, src: Path, size: int, stats: Stats,
                    reporter: Reporter, connections: int, part: int, *, status: str) -> None:
    staged: list[tuple[int, int]] = []
    if status == "uploading":
        found = await api.staged(image_id)
        if found.total == size:
            staged = merge(found.ranges)
            stats.resumed = sum(e - s for s, e in staged)
    elif status != "queued":
        raise ApiError(409, f"image {image_id} is {status}: nothing can be uploaded into it")
    runs = await trio.to_thread.run_sync(localfile.file_extents, src)
    data = [r for x in runs if not x.zero for r in subtract(x.start, x.end, staged)]
    zeros = [r for x in runs if x.zero for r in subtract(x.start, x.end, staged)]
    todo = [(s, e, False) for s, e in blocks(data, part)] + [(s, e, True) for s, e in zeros]
    reporter.event("upload", image_id=image_id, size=size, connections=connections,
                   extensions=True, resumed=stats.resumed)
    send, receive = trio.open_memory_channel[tuple[int, int, bool]](len(todo) or 1)
    for item in todo:
        send.send_nowait(item)
    send.close()
    fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with stats.stage("transfer"), reporter.progress(
                f"upload {image_id[:8]}", sum(e - s for s, e, _ in todo)) as advance:
            async def worker() -> None:
                async for start, end, zero in receive:
                    body = None if zero else await trio.to_thread.run_sync(
                        os.pread, fd, end - start, start)
                    if body is not None and localfile.is_zero(body):
                        body = None  # a zero run inside the data: declared, not sent
                    await api.put_part(image_id, start, body, end - start, size)
                    if body is None:
                        stats.zero_skipped += end - start
                    else:
                        stats.moved += end - start
                    advance(end - start)

            async with trio.open_nursery() as workers:
                for _ in range(max(1, min(connections, len(todo)))):
                    workers.start_soon(worker)
    finally:
        os.close(fd)


async def _chunks(src: Path, stats: Stats, advance: Any) -> AsyncIterator[bytes]:
    fd = await trio.to_thread.run_sync(os.open, src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while chunk := await trio.to_thread.run_sync(os.read, fd, READ):
            stats.moved += len(chunk)
            advance(len(chunk))
            yield chunk
    finally:
        os.close(fd)


async def wait_active(api: ImageAPI, image_id: str, patience: float) -> dict[str, Any]:
    """The image once active; ImportFailed if its import fails or takes over ``patience``
    seconds."""
    pause, growth, longest = IMPORT_POLL
    with trio.move_on_after(patience):
        while True:
            image = await api.image(image_id)
            if image["status"] == "active":
                return image
            if image["status"] != "importing" and image.get("os_glance_failed_import"):
                raise ImportFailed(f"the import of image {image_id} failed (it is "
                                   f"{image['status']}); the server's task says why")
            if image["status"] in ("killed", "deleted", "queued"):
                raise ImportFailed(f"image {image_id} is {image['status']} after its import")
            await trio.sleep(pause)
            pause = min(pause * growth, longest)
    raise ImportFailed(f"image {image_id} is not active after {patience:.0f}s")


def _check(image: dict[str, Any], digests: dict[str, Any]) -> None:
    if image.get("status") != "active":
        raise ImportFailed(f"image {image['id']} is {image.get('status')}, not active")
    if "md5" in digests and image.get("checksum") and image["checksum"] != digests["md5"]:
        raise VerificationFailed(f"image {image['id']}: checksum {image['checksum']}, the "
                                 f"file's md5 is {digests['md5']}")
    if "sha512" in digests and image.get("os_hash_algo") == "sha512" and \
            image.get("os_hash_value") != digests["sha512"]:
        raise VerificationFailed(f"image {image['id']}: os_hash_value differs from the "
                                 "file's sha512")

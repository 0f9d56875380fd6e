"""Download an image to a local file: N ranged GETs at once (default 4) over the data runs,
holes for the zero runs, resumable from ``<file>.transfer``, verified at the end.

Against a server without streamd's extents, the whole image is one data run fetched in one
stream; zero MiBs in what arrives still become holes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio

from streamd.sparse import Extent, punch_hole
from streamd.transfer import localfile
from streamd.transfer.api import ApiError, ImageAPI
from streamd.transfer.localfile import ResumeRecord, blocks, merge, subtract
from streamd.transfer.pacing import Pace
from streamd.transfer.report import Reporter, Stats

BLOCK = 8 * 1024 * 1024  # one ranged GET: big enough to amortise a request, small to resume
CHECKPOINT = 1.0  # seconds between fdatasync + resume record
HASH_STEP = 64 * 1024 * 1024  # bytes hashed per worker-thread call
WRITE_UNIT = 4 * localfile.ZERO_UNIT  # bytes received per write (a whole number of zero units)
# what a download is checked against: "auto" the server's xxh3 when its extents offer one,
# else as "digest"; "digest" the image's os_hash_value (else checksum); "none" nothing
VERIFY_MODES = ("auto", "digest", "none")


class NotDownloadable(Exception):
    """The image has no data to download (not active)."""


async def download(api: ImageAPI, image_id: str, dest: Path, reporter: Reporter, *,
                   connections: int = 4, verify: str = "auto", block: int = BLOCK,
                   pace: Pace | None = None) -> Stats:
    """Fetch ``image_id`` into ``dest``, checked as ``verify`` says (``VERIFY_MODES``); the
    statistics of the run."""
    stats = Stats(image_id=image_id, action="download")
    with stats.stage("prepare"):
        image = await api.image(image_id)
        if image.get("status") != "active" or image.get("size") is None:
            raise NotDownloadable(f"image {image_id} is {image.get('status')}: no data to "
                                  "download")
        size = stats.size = image["size"]
        stats.extensions = await api.discover()
        xxh3 = None
        if stats.extensions:
            found = await api.extents(image_id)
            runs, xxh3 = found.runs, found.xxh3
        else:
            runs = [Extent(0, size, zero=False)] if size else []
            connections = 1
        stats.connections = connections
        record_path = dest.with_name(dest.name + ".transfer")
        fd, record = await trio.to_thread.run_sync(_open_dest, dest, record_path, image)
    try:
        with stats.stage("prepare"):
            stats.resumed = sum(e - s for s, e in record.done)
            todo = [r for x in runs if not x.zero for r in subtract(x.start, x.end, record.done)]
            if stats.resumed:
                for s, e in todo:  # what a cut run left there is not trusted: zeros again
                    punch_hole(fd, s, e - s)
            stats.zero_skipped = sum(x.length for x in runs if x.zero)
        reporter.event("download", image_id=image_id, size=size, file=str(dest),
                       connections=connections, extensions=stats.extensions,
                       resumed=stats.resumed)
        digest = None if verify == "none" else localfile.Digest(
            image, xxh3 if verify == "auto" else None)
        frontier = Frontier([*record.done, *((x.start, x.end) for x in runs if x.zero)])
        async with trio.open_nursery() as nursery:
            if digest is not None:  # in order, behind the blocks as they land
                nursery.start_soon(_hash_in_order, digest, fd, size, frontier)
            with stats.stage("transfer"):
                await _fetch(api, image_id, fd, blocks(todo, block), record, stats, reporter,
                             connections, pace or Pace(None), frontier)
                await trio.to_thread.run_sync(os.fdatasync, fd)
            hashed_from = time.monotonic()  # what the hash has still to do: the verify stage
        if digest is not None:
            stats.stages["verify"] = time.monotonic() - hashed_from
    finally:
        os.close(fd)
    if digest is not None:
        checked = digest.check(str(dest))
        reporter.event("verified", image_id=image_id, file=str(dest), digest=checked)
    await trio.to_thread.run_sync(lambda: record_path.unlink(missing_ok=True))
    return stats


def _open_dest(dest: Path, record_path: Path, image: dict[str, Any]
               ) -> tuple[int, ResumeRecord]:
    """The file open for writing and the record of what is in it: an earlier run's, for
    the same image, or a new one over a file of holes (the zero runs are done already)."""
    record = ResumeRecord.load(record_path, image) if dest.exists() else None
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if record is None:
        os.ftruncate(fd, 0)
        os.ftruncate(fd, image["size"])
        record = ResumeRecord(record_path, image["id"], image.get("checksum"), image["size"],
                              [])
        record.save([])
    return fd, record


async def _fetch(api: ImageAPI, image_id: str, fd: int, todo: list[tuple[int, int]],
                 record: ResumeRecord, stats: Stats, reporter: Reporter, connections: int,
                 pace: Pace, frontier: Frontier) -> None:
    """Run ``connections`` workers over the blocks; checkpoint what is durable."""
    done = list(record.done)
    finished: list[tuple[int, int]] = []
    send, receive = trio.open_memory_channel[tuple[int, int]](len(todo) or 1)
    for item in todo:
        send.send_nowait(item)
    send.close()

    async def checkpoint() -> None:
        batch = finished[:]
        await trio.to_thread.run_sync(os.fdatasync, fd)
        done.extend(batch)
        del finished[:len(batch)]
        record.save(done)

    async def checkpoints() -> None:
        while True:
            await trio.sleep(CHECKPOINT)
            await checkpoint()

    total = sum(e - s for s, e in todo)
    with reporter.progress(f"download {image_id[:8]}", total) as advance:
        async def worker() -> None:
            async for start, end in receive:
                await _get_block(api, image_id, fd, start, end, stats, advance, pace)
                finished.append((start, end))
                frontier.add(start, end)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(checkpoints)
            async with trio.open_nursery() as workers:
                for _ in range(max(1, min(connections, len(todo)))):
                    workers.start_soon(worker)
            nursery.cancel_scope.cancel()
    await checkpoint()


class Frontier:
    """The ranges of the file that hold their final bytes (durable or not): the in-order
    hash follows it."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = merge(ranges)
        self.changed = trio.Event()

    def add(self, start: int, end: int) -> None:
        self.ranges = merge([*self.ranges, (start, end)])
        self.changed.set()
        self.changed = trio.Event()

    def ready_from(self, pos: int) -> int:
        """Where the run of final bytes that holds ``pos`` ends (``pos``: none does)."""
        for start, end in self.ranges:
            if start <= pos < end:
                return end
        return pos


async def _hash_in_order(digest: localfile.Digest, fd: int, size: int, frontier: Frontier
                         ) -> None:
    """Hash the file from 0 to ``size`` as its bytes become final: the zero runs at once
    (holes read fast), each block once it has landed. What is left when the transfer ends
    is the ``verify`` stage."""
    pos = 0
    while pos < size:
        ready = frontier.ready_from(pos)
        if ready == pos:
            await frontier.changed.wait()
            continue
        end = min(ready, pos + HASH_STEP)
        await trio.to_thread.run_sync(digest.update_from, fd, pos, end)
        pos = end


async def _get_block(api: ImageAPI, image_id: str, fd: int, start: int, end: int,
                     stats: Stats, advance: Any, pace: Pace) -> None:
    """One ranged GET into the file (the whole image in one GET when it is one block)."""
    ranged = not (start == 0 and end == stats.size)
    async with api.read(image_id, start if ranged else None, end if ranged else None) as r:
        if r.status_code >= 400:
            await r.aread()
            raise ApiError(r.status_code, r.text[:300])
        pos = start
        buf = memoryview(bytearray(min(WRITE_UNIT, end - start)))
        fill = 0
        async for chunk in r.aiter_raw():
            await pace.took(len(chunk))
            piece = memoryview(chunk)
            while piece:
                n = min(len(piece), len(buf) - fill, end - pos - fill)
                if n <= 0:
                    raise ApiError(502, f"bytes {start}-{end - 1}: the server sent more")
                buf[fill:fill + n] = piece[:n]
                piece = piece[n:]
                fill += n
                if fill == len(buf):
                    await _write(fd, buf, pos, stats)
                    pos += fill
                    advance(fill)
                    fill = 0
        if fill:
            await _write(fd, buf[:fill], pos, stats)
            pos += fill
            advance(fill)
    if pos != end:
        raise ApiError(502, f"bytes {start}-{end - 1}: the server sent {pos - start} bytes")


async def _write(fd: int, data: memoryview, offset: int, stats: Stats) -> None:
    """Every range still to fetch is a hole (a fresh file, or punched on resume): zero MiBs
    need no write. ``data`` is the caller's buffer, untouched until this returns."""
    stats.moved += len(data)
    skipped = await trio.to_thread.run_sync(
        lambda: localfile.write_block(fd, data, offset, holes=True))
    stats.zero_skipped += skipped

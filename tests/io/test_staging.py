"""The staging area: appends keep a prefix whatever ends them, resumes re-hash the staged
prefix, and a complete stage moves into a store by hard link or by a verified copy."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from pathlib import Path

import pytest
import trio

from streamd.errors import StreamdError
from streamd.io import BytesSource, FileStore, MemoryStore, SourceAborted, store_stream
from streamd.io.sources import ChainedSource, EndOnAbort
from streamd.io.staging import StagedDigests, StageOffsetMismatch, StagingArea
from streamd.units import KiB

CHUNK = 64 * KiB


class FailingSource:
    """``data``, then ``error`` instead of the end."""

    def __init__(self, data: bytes, error: Exception) -> None:
        self._inner = BytesSource(data)
        self._error = error

    async def readinto(self, buf: memoryview) -> int:
        n = await self._inner.readinto(buf)
        if n == 0:
            raise self._error
        return n


async def append(area: StagingArea, image_id: str, offset: int, source: object):  # noqa: ANN201
    async with area.prefix(image_id, offset) as prefix:
        return await store_stream(ChainedSource(prefix, source), area.appender(image_id, offset),
                                  key=image_id, chunk_size=CHUNK, queue_depth=2)


async def test_resumes_hash_the_whole_image(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    data = random.Random(1).randbytes(5 * CHUNK + 17)
    cuts = [0, 3, CHUNK + 5, 4 * CHUNK, len(data)]
    for start, end in zip(cuts, cuts[1:], strict=False):
        result = await append(area, "img", start, BytesSource(data[start:end], max_read=999))
        assert result.size == end
    assert area.data_path("img").read_bytes() == data
    assert result.checksum == hashlib.md5(data).hexdigest()
    assert result.os_hash_value == hashlib.sha512(data).hexdigest()


async def test_a_cut_off_append_keeps_every_byte_that_arrived(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    data = random.Random(2).randbytes(3 * CHUNK + 100)
    body = EndOnAbort(FailingSource(data[:2 * CHUNK + 7], SourceAborted("client gone")))
    result = await append(area, "img", 0, body)
    assert isinstance(body.aborted, SourceAborted)
    assert result.size == 2 * CHUNK + 7
    assert area.data_path("img").read_bytes() == data[:2 * CHUNK + 7]


async def test_a_failed_append_leaves_a_prefix(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    data = bytes(CHUNK) + random.Random(3).randbytes(2 * CHUNK)  # a zero chunk: a hole
    with pytest.raises(RuntimeError):
        await append(area, "img", 0, FailingSource(data, RuntimeError("broken source")))
    staged = area.data_path("img").read_bytes()
    assert len(staged) % CHUNK == 0 and data.startswith(staged)


async def test_an_append_at_the_wrong_offset_is_refused(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    await append(area, "img", 0, BytesSource(b"abc"))
    with pytest.raises(StageOffsetMismatch) as caught:
        await area.appender("img", 5).write(_chunks(b"x"), key="img")
    assert caught.value.expected == 3 and caught.value.status == 416


async def _chunks(data: bytes):  # noqa: ANN202
    yield memoryview(data)


async def test_record_and_stage(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    assert await area.stage("img") is None
    await append(area, "img", 0, BytesSource(b"abcd"))
    await area.record("img", total=10)
    stage = await area.stage("img")
    assert stage is not None and (stage.size, stage.total, stage.complete) == (4, 10, False)
    digests = StagedDigests("m", "sha512", "s", "x")
    await area.record("img", total=4, digests=digests)
    stage = await area.stage("img")
    assert stage is not None and stage.complete and stage.digests == digests
    await area.discard("img")
    assert await area.stage("img") is None and list(area.root.iterdir()) == []


async def test_move_into_a_file_store_is_a_hard_link(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    store = FileStore(tmp_path / "images")
    result = await append(area, "img", 0, BytesSource(b"linked data"))
    digests = StagedDigests(result.checksum, "sha512", result.os_hash_value, result.xxh3)
    stored = await area.move_into(store, "img", digests)
    assert stored.size == 11
    assert os.stat(area.data_path("img")).st_ino == os.stat(store.root / "img").st_ino
    await area.discard("img")
    assert (store.root / "img").read_bytes() == b"linked data"


async def test_move_into_a_file_store_that_cannot_link_it_is_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another file system (EXDEV): the file store answers None and the stage is copied."""
    area = StagingArea(tmp_path / "staging")
    store = FileStore(tmp_path / "images")
    result = await append(area, "img", 0, BytesSource(b"copied data"))
    digests = StagedDigests(result.checksum, "sha512", result.os_hash_value, result.xxh3)

    def cross_device(source: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    stored = await area.move_into(store, "img", digests)
    assert stored.size == 11
    assert os.stat(area.data_path("img")).st_ino != os.stat(store.root / "img").st_ino
    assert (store.root / "img").read_bytes() == b"copied data"
    assert os.listdir(store.root) == ["img"]


async def test_move_into_another_store_is_a_verified_copy(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging", read_chunk=CHUNK)
    data = random.Random(4).randbytes(3 * CHUNK)
    result = await append(area, "img", 0, BytesSource(data))
    good = StagedDigests(result.checksum, "sha512", result.os_hash_value, result.xxh3)
    store = MemoryStore()
    stored = await area.move_into(store, "img", good)
    chunks = [bytes(c) async for c in store.read(stored.location)]
    assert b"".join(chunks) == data
    other = MemoryStore()
    with pytest.raises(StreamdError, match="changed after it was staged"):
        await area.move_into(other, "img", StagedDigests("m", "sha512", "s", "0" * 32))
    await trio.lowlevel.checkpoint()

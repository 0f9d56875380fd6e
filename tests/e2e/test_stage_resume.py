"""Resumable staging on a real server: a stage cut off keeps what arrived, HEAD reports
it, ``Content-Range`` resumes it, and the import's digests are those of the whole file."""

from __future__ import annotations

import hashlib
import random
import time

import httpx
import pytest

from tests.data_client import OTHER, create_image, error_of, file_url, show
from tests.import_client import (
    MiB,
    RawStage,
    stage,
    staged,
    start_import,
    wait_for_import,
)
from tests.servers import ServerProcess


def resume(server: ServerProcess, image_id: str, data: bytes, timeout: float = 10.0
           ) -> tuple[int, httpx.Response]:
    """HEAD for the offset, then PUT the rest from there; retried while the cut-off request
    is still being wound up (409) or still moving its last bytes (416)."""
    deadline = time.monotonic() + timeout
    while True:
        offset = int(staged(server, image_id).headers["Upload-Offset"])
        r = stage(server, image_id, data[offset:],
                  **{"Content-Range": f"bytes {offset}-{len(data) - 1}/{len(data)}"})
        if r.status_code not in (409, 416) or time.monotonic() > deadline:
            return offset, r
        time.sleep(0.05)


def cut_off_stage(server: ServerProcess, image_id: str, data: bytes, sent: int) -> None:
    raw = RawStage(server, image_id, content_length=len(data))
    raw.send(data[:sent])
    deadline = time.monotonic() + 10
    while int(staged(server, image_id).headers["Upload-Offset"]) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    raw.cut()


def test_cut_off_stage_resumed_from_the_reported_offset(server: ServerProcess) -> None:
    data = random.Random(5).randbytes(6 * MiB + 4321)
    image_id = create_image(server)
    cut_off_stage(server, image_id, data, sent=3 * MiB + 999)
    offset, r = resume(server, image_id, data)
    assert offset == 3 * MiB + 999  # every byte that arrived was kept
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == r.headers["Upload-Length"] == str(len(data))
    image = show(server, image_id)
    assert (image["status"], image["size"]) == ("uploading", len(data))
    assert start_import(server, image_id, {"name": "glance-direct"}).status_code == 202
    image = wait_for_import(server, image_id)
    assert image["status"] == "active"
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert httpx.get(file_url(server, image_id)).content == data


def test_an_incomplete_stage_is_not_importable(server: ServerProcess) -> None:
    data = random.Random(6).randbytes(3 * MiB)
    image_id = create_image(server)
    cut_off_stage(server, image_id, data, sent=2 * MiB)
    head = staged(server, image_id)
    assert head.headers["Upload-Length"] == str(len(data))  # from the cut request's length
    assert show(server, image_id)["status"] == "uploading"
    assert show(server, image_id)["size"] is None
    r = start_import(server, image_id, {"name": "glance-direct"})
    assert r.status_code == 409
    message = error_of(r)["message"]
    assert f"of {len(data)} bytes are staged" in message


def test_resume_at_a_wrong_offset_is_416_naming_the_right_one(server: ServerProcess) -> None:
    data = random.Random(7).randbytes(2 * MiB)
    image_id = create_image(server)
    r = stage(server, image_id, data[:MiB], **{"Content-Range": f"bytes 0-{MiB - 1}/{2 * MiB}"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(MiB)
    for wrong in (0, MiB - 1, MiB + 1):
        r = stage(server, image_id, data[wrong:],
                  **{"Content-Range": f"bytes {wrong}-{2 * MiB - 1}/{2 * MiB}"})
        assert r.status_code == 416, r.text
        assert f"resume at offset {MiB}" in error_of(r)["message"]
        assert r.headers["Upload-Offset"] == str(MiB)
    r = stage(server, image_id, data[MiB:],
              **{"Content-Range": f"bytes {MiB}-{2 * MiB - 1}/{2 * MiB}"})
    assert r.status_code == 204
    assert show(server, image_id)["size"] == 2 * MiB


def test_a_stage_in_three_ranges(server: ServerProcess) -> None:
    data = random.Random(8).randbytes(5 * MiB + 1)
    image_id = create_image(server)
    bounds = [0, 1234567, 3 * MiB, len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        r = stage(server, image_id, data[start:end],
                  **{"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})
        assert r.status_code == 204, r.text
        assert r.headers["Upload-Offset"] == str(end)
    assert start_import(server, image_id, {"name": "glance-direct"}).status_code == 202
    image = wait_for_import(server, image_id)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


@pytest.mark.parametrize(("header", "why"), [
    ("bytes 0-9", "START-END/TOTAL"),
    ("bytes 5-2/10", "START <= END < TOTAL"),
    ("bytes 0-10/10", "START <= END < TOTAL"),
    ("items 0-1/2", "START-END/TOTAL"),
])
def test_bad_content_range_is_400(server: ServerProcess, header: str, why: str) -> None:
    image_id = create_image(server)
    r = stage(server, image_id, b"xx", **{"Content-Range": header})
    assert r.status_code == 400
    assert why in error_of(r)["message"]
    assert show(server, image_id)["status"] == "queued"


def test_stage_answers_as_glance(server: ServerProcess) -> None:
    image_id = create_image(server)
    url = f"{server.url}/v2/images/{image_id}/stage"
    r = httpx.put(url, content=b"abc", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert stage(server, image_id, b"abc", headers=OTHER).status_code == 404
    r = httpx.get(url)
    assert r.status_code == 405 and r.headers["Allow"] == "HEAD, PUT"
    assert stage(server, image_id, b"abc").status_code == 204
    r = stage(server, image_id, b"abc")
    assert r.status_code == 409  # all staged: Glance's uploading -> uploading
    assert "Image status transition from uploading to uploading" in error_of(r)["message"]


def test_a_plain_put_restarts_an_incomplete_stage(server: ServerProcess) -> None:
    image_id = create_image(server)
    assert stage(server, image_id, b"part",
                 **{"Content-Range": "bytes 0-3/100"}).status_code == 204
    assert stage(server, image_id, b"whole image").status_code == 204
    assert show(server, image_id)["size"] == len(b"whole image")

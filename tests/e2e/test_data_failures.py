"""Uploads that fail for reasons outside the request: full disk, broken store, shutdown, crash.

Each must end with the image ``queued`` (retryable), no temp file and no data in the images
dir, and a server that goes on serving (or, after a crash, one that repairs this at start).
"""

from __future__ import annotations

import hashlib
import random
import resource
import shutil
import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.data_client import (
    RawUpload,
    create_image,
    data_files,
    error_of,
    images_dir,
    pseudo_random,
    registry_row,
    show,
    temp_files,
    upload,
    wait_for_status,
)
from tests.servers import ServerProcess

MiB = 1024 * 1024
FSIZE_LIMIT = 8 * MiB  # the largest file the server process may write


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_full_disk_is_413_and_leaves_the_image_queued(make_server) -> None:  # noqa: ANN001
    """RLIMIT_FSIZE makes the store's writes fail with EFBIG, as a full disk (ENOSPC) would;
    Glance answers 413 "Image storage media is full" to both."""
    srv = make_server(preexec=_limit_file_size)
    image_id = create_image(srv)
    data = random.Random("full").randbytes(2 * FSIZE_LIMIT)
    with RawUpload(srv, image_id, content_length=len(data)) as raw:
        raw.send_in_background(data)
        status, body = raw.response()
    assert status == 413
    assert b"Image storage media is full" in body
    wait_for_status(srv, image_id, "queued")
    assert temp_files(srv.data_dir) == []
    assert data_files(srv.data_dir) == []
    small = data[:MiB]
    assert upload(srv, image_id, small).status_code == 204
    assert show(srv, image_id)["checksum"] == hashlib.md5(small).hexdigest()


def test_store_failure_is_503_and_retryable(make_server) -> None:  # noqa: ANN001
    srv = make_server()
    image_id = create_image(srv)
    shutil.rmtree(images_dir(srv.data_dir))  # the store can no longer create its temp file
    r = upload(srv, image_id, b"data")
    assert r.status_code == 503
    assert "retry" in error_of(r)["message"]
    assert show(srv, image_id)["status"] == "queued"
    images_dir(srv.data_dir).mkdir()
    assert upload(srv, image_id, b"data").status_code == 204


def test_sigterm_mid_upload_leaves_the_image_queued(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_GRACEFUL_TIMEOUT": "0.5"})
    image_id = create_image(srv)
    with RawUpload(srv, image_id, content_length=16 * MiB) as raw:
        raw.send(b"s" * (3 * MiB))
        wait_for_status(srv, image_id, "saving")
        assert srv.stop() == 0
    # cleaned up on the way out, not only at the next start
    row = registry_row(srv.data_dir, image_id)
    assert row is not None and row["status"] == "queued"
    assert temp_files(srv.data_dir) == []
    with ServerProcess(data_dir=srv.data_dir) as again:
        assert upload(again, image_id, b"after restart").status_code == 204


def test_crash_mid_upload_is_repaired_at_start(make_server) -> None:  # noqa: ANN001
    srv = make_server()
    image_id = create_image(srv)
    with RawUpload(srv, image_id, content_length=16 * MiB) as raw:
        raw.send(random.Random(1).randbytes(3 * MiB))
        wait_for_status(srv, image_id, "saving")
        deadline = time.monotonic() + 10
        while not temp_files(srv.data_dir) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
    assert registry_row(srv.data_dir, image_id)["status"] == "saving"
    assert temp_files(srv.data_dir) != []
    with ServerProcess(data_dir=srv.data_dir) as again:
        assert show(again, image_id)["status"] == "queued"
        assert temp_files(again.data_dir) == []
        assert upload(again, image_id, b"after crash").status_code == 204


@pytest.mark.slow
def test_memory_stays_bounded_during_a_2gib_upload(make_server) -> None:  # noqa: ANN001
    """A store slower than the network: back-pressure, not the heap, absorbs the difference.

    The server's RSS may grow by its transfer buffers (chunk_size × queue_depth = 4 MiB),
    hypercorn's queue (1 MiB) and thread stacks; 64 MiB is the bound asked for.
    """
    srv = make_server(env={"STREAMD_STORE_THROTTLE_MIB_S": "160"})
    assert srv.proc is not None
    process = psutil.Process(srv.proc.pid)
    warm = create_image(srv)  # first upload: threads started, code paths loaded
    assert upload(srv, warm, b"w" * (8 * MiB)).status_code == 204
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    image_id = create_image(srv)
    size = 2 * 1024 * MiB
    md5 = hashlib.md5()

    def body():  # noqa: ANN202
        for block in pseudo_random(size, seed=2):
            md5.update(block)
            yield block

    started = time.monotonic()
    r = upload(srv, image_id, body(), timeout=300)
    took = time.monotonic() - started
    done.set()
    sampler.join()
    assert r.status_code == 204, r.text
    image = show(srv, image_id)
    assert (image["size"], image["checksum"]) == (size, md5.hexdigest())
    assert took > size / (160 * MiB) * 0.9  # the throttle held the upload back
    grew = peak - baseline
    print(f"2 GiB upload in {took:.1f} s: RSS {baseline / MiB:.0f} MiB, peak +{grew / MiB:.1f} MiB")
    assert grew < 64 * MiB, f"RSS grew by {grew / MiB:.1f} MiB"
    httpx.delete(f"{srv.url}/v2/images/{image_id}", headers={"X-Roles": "admin"})


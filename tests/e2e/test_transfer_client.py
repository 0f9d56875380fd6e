"""streamd-transfer against real servers: downloads that are byte-identical and sparse, a
download resumed after kill -9, parallel uploads that skip zeros and resume, the fallback to
one stream against a server without the extensions, and replication that a re-run repeats
for nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamd.transfer.cli import main
from tests.data_client import MEMBER, create_image, images_dir, show, upload
from tests.import_client import MiB
from tests.servers import ServerProcess

AS_MEMBER = [f"-H{k}:{v}" for k, v in MEMBER.items()]


def transfer(server: ServerProcess, *args: str, check: int | None = 0
             ) -> tuple[int, list[dict[str, Any]]]:
    """Run the client's command line (in this process: a start-up costs more than most
    runs here) with --json; its exit code and its events."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--url", server.url, *AS_MEMBER, "--json", *args])
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    if check is not None:
        assert code == check, (code, out.getvalue())
    return code, events


def sparse_image(seed: int) -> bytes:
    """16 MiB: random data runs between runs of zeros (one inside a data run's MiB)."""
    rng = random.Random(seed)
    return (bytes(4 * MiB) + rng.randbytes(3 * MiB) + bytes(5 * MiB) + rng.randbytes(MiB)
            + bytes(2 * MiB) + rng.randbytes(MiB - 7))


def write_sparse(path: Path, data: bytes) -> None:
    """``data`` with its zero MiBs left as holes."""
    with open(path, "wb") as f:
        for pos in range(0, len(data), MiB):
            piece = data[pos:pos + MiB]
            if piece.strip(b"\0"):
                f.seek(pos)
                f.write(piece)
        f.truncate(len(data))


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def stats_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["event"] == "stats")


def test_download_is_byte_identical_sparse_and_verified(server: ServerProcess,
                                                        tmp_path: Path) -> None:
    data = sparse_image(1)
    image_id = create_image(server)
    assert upload(server, image_id, data).status_code == 204
    dest = tmp_path / "disk.img"
    _, events = transfer(server, "download", image_id, str(dest))
    assert dest.read_bytes() == data
    assert allocated(dest) <= 6 * MiB  # the 5 MiB of data (and a few blocks), not 16
    stats = stats_of(events)
    assert stats["extensions"] is True and stats["connections"] == 4
    assert stats["bytes_moved"] == 5 * MiB - 7
    assert stats["zero_bytes_skipped"] == 11 * MiB
    # checked against the xxh3 the extents carry (sha512 of the zeros too would cost more)
    assert [e["digest"] for e in events if e["event"] == "verified"] == ["xxh3_128"]
    assert not (tmp_path / "disk.img.transfer").exists()
    again = tmp_path / "again.img"
    _, events = transfer(server, "download", "--verify", "digest", image_id, str(again))
    assert [e["digest"] for e in events if e["event"] == "verified"] == ["sha512"]
    assert again.read_bytes() == data
    with open(dest, "r+b") as f:  # one byte changed: verification fails, exit code 4
        f.seek(5 * MiB)
        f.write(b"\x01")
    _, events = transfer(server, "verify", image_id, str(dest), check=4)
    assert "sha512" in events[-1]["message"]


def test_download_of_bytes_that_are_not_the_recorded_ones_fails(server: ServerProcess,
                                                               tmp_path: Path) -> None:
    """The stored file changed behind the server's back: whichever digest the download is
    checked against, it says so (exit code 4) and names the digest."""
    data = sparse_image(5)
    image_id = create_image(server)
    assert upload(server, image_id, data).status_code == 204
    with open(images_dir(server.data_dir) / image_id, "r+b") as f:
        f.seek(4 * MiB + 10)
        f.write(b"\xff")
    for mode, name in (("auto", "xxh3_128"), ("digest", "sha512")):
        dest = tmp_path / f"{mode}.img"
        _, events = transfer(server, "download", "--verify", mode, image_id, str(dest),
                             check=4)
        assert events[-1]["event"] == "error" and name in events[-1]["message"]
    _, events = transfer(server, "download", "--verify", "none", image_id,
                         str(tmp_path / "none.img"))
    assert not [e for e in events if e["event"] == "verified"]


def test_download_resumes_after_kill_9(server: ServerProcess, tmp_path: Path) -> None:
    rng = random.Random(2)
    data = rng.randbytes(32 * MiB)
    image_id = create_image(server)
    assert upload(server, image_id, data).status_code == 204
    dest = tmp_path / "dense.img"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamd.transfer.cli", "--url", server.url, *AS_MEMBER,
         "--json", "-c", "1", "--max-rate", "8", "download", image_id, str(dest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    record = tmp_path / "dense.img.transfer"
    deadline = time.monotonic() + 30
    while True:  # until a checkpoint has recorded a block
        if record.exists() and json.loads(record.read_text() or "{}").get("done"):
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(record.read_text())["done"]
    assert 0 < sum(e - s for s, e in done) < len(data)
    _, events = transfer(server, "download", image_id, str(dest))
    stats = stats_of(events)
    assert stats["bytes_resumed"] == sum(e - s for s, e in done)
    assert stats["bytes_moved"] == len(data) - stats["bytes_resumed"]
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_upload_in_parts_skips_zeros_and_resumes(server: ServerProcess,
                                                 tmp_path: Path) -> None:
    data = sparse_image(3)
    src = tmp_path / "src.img"
    write_sparse(src, data)
    _, events = transfer(server, "upload", str(src), "--name", "parts")
    image_id = next(e["image_id"] for e in events if e["event"] == "created")
    image = show(server, image_id)
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    stats = stats_of(events)
    assert stats["bytes_moved"] == 5 * MiB - 7  # the zero MiB inside data was declared
    assert stats["zero_bytes_skipped"] == 11 * MiB
    # checked against the server's xxh3 by default, against checksum + sha512 on demand
    assert [e["digest"] for e in events if e["event"] == "verified"] == ["xxh3_128"]
    _, events = transfer(server, "upload", str(src), "--name", "by-digest",
                         "--verify", "digest")
    assert [e["digest"] for e in events if e["event"] == "verified"] == ["md5+sha512"]

    # an upload cut off: some parts staged; the client sends only the rest
    resumed = create_image(server)
    total = len(data)
    for start in (4 * MiB, 6 * MiB):
        r = httpx.put(f"{server.url}/v2/images/{resumed}/stage", content=data[start:start + MiB],
                      headers={**MEMBER, "Content-Type": "application/octet-stream",
                               "Upload-Part": "data",
                               "Content-Range": f"bytes {start}-{start + MiB - 1}/{total}"})
        assert r.status_code == 204, r.text
    _, events = transfer(server, "upload", str(src), "--image-id", resumed)
    stats = stats_of(events)
    assert stats["bytes_resumed"] == 2 * MiB
    assert stats["bytes_moved"] == 3 * MiB - 7
    assert show(server, resumed)["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_plain_image_api_fallback(make_server: Any, tmp_path: Path) -> None:
    plain = make_server(env={"STREAMD_TRANSFER_EXTENSIONS": "false"})
    assert httpx.get(f"{plain.url}/v2/info/streamd").status_code == 404
    data = sparse_image(4)
    src = tmp_path / "src.img"
    write_sparse(src, data)
    _, events = transfer(plain, "upload", str(src))
    image_id = next(e["image_id"] for e in events if e["event"] == "created")
    stats = stats_of(events)
    assert (stats["extensions"], stats["connections"]) == (False, 1)
    assert stats["bytes_moved"] == len(data)
    dest = tmp_path / "back.img"
    _, events = transfer(plain, "download", image_id, str(dest))
    stats = stats_of(events)
    assert (stats["extensions"], stats["connections"]) == (False, 1)
    assert dest.read_bytes() == data
    assert [e["digest"] for e in events if e["event"] == "verified"] == ["sha512"]
    assert allocated(dest) <= 6 * MiB  # zero MiBs that arrived became holes all the same
    code, events = transfer(plain, "verify", image_id, str(src))
    code, events = transfer(plain, "download", "no-such-image", str(dest), check=3)
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 3


@pytest.mark.parametrize("source", ["streamd", "plain"])
def test_replication_streamd_to_streamd(server: ServerProcess, make_server: Any,
                                        source: str) -> None:
    """From a streamd, and from a plain Image API server as Glance is (streamd with the
    extensions off: one stream per image from it; bench/transfergroup.py replicates from the
    real Glance peer)."""
    src = make_server(env={"STREAMD_TRANSFER_EXTENSIONS": "false"} if source == "plain" else {})
    dst = server
    ids = []
    for n, payload in enumerate((sparse_image(5), random.Random(6).randbytes(3 * MiB + 5))):
        image_id = create_image(src, name=f"rep-{n}", tags=["replica", f"n{n}"],
                                hypervisor_type="kvm")
        assert upload(src, image_id, payload).status_code == 204
        ids.append(image_id)
    code, events = transfer(src, "compare", src.url, dst.url, check=1)
    assert {e["image_id"]: e["event"] for e in events} == dict.fromkeys(ids, "missing")
    _, events = transfer(src, "replicate", src.url, dst.url, "--dry-run")
    assert all(e["event"].startswith("would copy") for e in events)
    _, events = transfer(src, "replicate", src.url, dst.url)
    moved = sum(e["bytes_moved"] for e in events if e["event"] == "stats")
    # from a plain server every byte comes over (no extents; a part all zeros would not)
    assert moved == (5 * MiB - 7 if source == "streamd" else 16 * MiB - 7) + 3 * MiB + 5
    for image_id in ids:
        a, b = show(src, image_id), show(dst, image_id)
        assert b["status"] == "active"
        for key in ("os_hash_value", "checksum", "size", "name", "hypervisor_type"):
            assert a[key] == b[key], key
        assert sorted(a["tags"]) == sorted(b["tags"])
    _, events = transfer(src, "replicate", src.url, dst.url)  # again: nothing moves
    assert [e["event"] for e in events] == ["same", "same"]
    code, events = transfer(src, "compare", src.url, dst.url, check=0)

"""streamd's parallel stage and extents on a real server: parts at any offset from several
connections, a part cut off resumed from what HEAD lists, the import's digests those of the
whole, and the zero runs of a stored sparse image."""

from __future__ import annotations

import hashlib
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import xxhash

from tests.data_client import MEMBER, OCTET, create_image, error_of, show, upload
from tests.import_client import MiB, RawStage, stage_url, staged, start_import, wait_for_import
from tests.servers import ServerProcess


def put_part(server: ServerProcess, image_id: str, data: bytes, start: int, total: int,
             client: httpx.Client | None = None) -> httpx.Response:
    headers = {**MEMBER, **OCTET, "Upload-Part": "data",
               "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"}
    return (client or httpx).put(stage_url(server, image_id), content=data, headers=headers,
                                 timeout=30)


def put_zero(server: ServerProcess, image_id: str, start: int, length: int, total: int
             ) -> httpx.Response:
    headers = {**MEMBER, "Upload-Part": "zero",
               "Content-Range": f"bytes {start}-{start + length - 1}/{total}"}
    return httpx.put(stage_url(server, image_id), headers=headers, timeout=30)


def image_of(seed: int) -> tuple[bytes, list[tuple[int, int]]]:
    """6 MiB + a tail: random data with a 2 MiB run of zeros in the middle; its parts."""
    rng = random.Random(seed)
    data = rng.randbytes(2 * MiB) + bytes(2 * MiB) + rng.randbytes(2 * MiB + 12345)
    parts = [(o, min(MiB, len(data) - o)) for o in range(0, len(data), MiB)]
    return data, parts


def test_parts_from_four_connections_out_of_order_import_to_the_right_hashes(
    server: ServerProcess,
) -> None:
    data, parts = image_of(1)
    total = len(data)
    image_id = create_image(server)
    data_parts = [p for p in parts if not 2 * MiB <= p[0] < 4 * MiB]
    random.Random(2).shuffle(data_parts)
    clients = [httpx.Client() for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda n: put_part(server, image_id, data[data_parts[n][0]:sum(data_parts[n])],
                                   data_parts[n][0], total, clients[n % 4]),
                range(len(data_parts))))
    finally:
        for c in clients:
            c.close()
    assert [r.status_code for r in answers] == [204] * len(data_parts), [
        r.text for r in answers if r.status_code != 204]
    head = staged(server, image_id)
    assert head.headers["Upload-Ranges"] == f"0-{2 * MiB - 1},{4 * MiB}-{total - 1}"
    assert head.headers["Upload-Offset"] == str(2 * MiB)
    assert head.headers["Upload-Length"] == str(total)

    r = start_import(server, image_id, {"name": "glance-direct"})  # a hole: refused
    assert r.status_code == 409
    assert f"the first bytes {2 * MiB}-{4 * MiB - 1}" in error_of(r)["message"]

    r = put_zero(server, image_id, 2 * MiB, 2 * MiB, total)
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Ranges"] == f"0-{total - 1}"
    assert start_import(server, image_id, {"name": "glance-direct"}).status_code == 202
    image = wait_for_import(server, image_id)
    assert image["status"] == "active", image
    assert image["size"] == total
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = httpx.get(f"{server.url}/v2/images/{image_id}/file", headers=MEMBER)
    assert got.content == data


def test_a_part_cut_off_is_resumed_from_the_ranges_head_lists(server: ServerProcess) -> None:
    data, parts = image_of(3)
    total = len(data)
    image_id = create_image(server)
    for start, length in parts[1:]:
        assert put_part(server, image_id, data[start:start + length], start, total
                        ).status_code == 204
    raw = RawStage(server, image_id, content_length=MiB,
                   headers={**MEMBER, "Upload-Part": "data",
                            "Content-Range": f"bytes 0-{MiB - 1}/{total}"})
    raw.send(data[:300_000])
    time.sleep(0.3)
    raw.cut()
    deadline = time.monotonic() + 10
    while (ranges := staged(server, image_id).headers["Upload-Ranges"]).startswith(f"{MiB}-"):
        assert time.monotonic() < deadline, ranges
        time.sleep(0.05)
    first, _ = ranges.split(",")[0].split("-")
    assert first == "0" and ranges.split(",")[0] != f"0-{total - 1}", ranges
    head = staged(server, image_id)
    have = int(head.headers["Upload-Offset"])
    assert 0 < have < MiB  # the bytes that arrived were kept, and only those
    assert put_part(server, image_id, data[have:MiB], have, total).status_code == 204
    assert staged(server, image_id).headers["Upload-Ranges"] == f"0-{total - 1}"
    assert start_import(server, image_id, {"name": "glance-direct"}).status_code == 202
    image = wait_for_import(server, image_id)
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_parts_are_refused_with_a_reason(server: ServerProcess) -> None:
    image_id = create_image(server)
    r = put_part(server, image_id, b"x" * 10, 0, 100)
    assert r.status_code == 204
    r = put_part(server, image_id, b"x" * 10, 10, 200)  # another total
    assert r.status_code == 400
    assert "started as 100 bytes" in error_of(r)["message"]
    r = httpx.put(stage_url(server, image_id), content=b"abc",
                  headers={**MEMBER, **OCTET, "Upload-Part": "data"})
    assert r.status_code == 400
    assert "needs Content-Range" in error_of(r)["message"]
    r = httpx.put(stage_url(server, image_id), content=b"abc",  # sequential into a parallel
                  headers={**MEMBER, **OCTET})
    assert r.status_code == 409
    assert "being staged in parts" in error_of(r)["message"]


def test_extents_of_a_sparse_image_match_what_was_written(server: ServerProcess) -> None:
    rng = random.Random(4)
    data = bytes(3 * MiB) + rng.randbytes(MiB) + bytes(4 * MiB) + rng.randbytes(MiB)
    image_id = create_image(server)
    assert upload(server, image_id, data).status_code == 204
    r = httpx.get(f"{server.url}/v2/images/{image_id}/extents", headers=MEMBER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["size"] == len(data) and body["zero_runs_known"] is True
    assert body["xxh3"] == xxhash.xxh3_128(data).hexdigest()
    assert body["extents"] == [
        {"start": 0, "length": 3 * MiB, "zero": True},
        {"start": 3 * MiB, "length": MiB, "zero": False},
        {"start": 4 * MiB, "length": 4 * MiB, "zero": True},
        {"start": 8 * MiB, "length": MiB, "zero": False},
    ]
    queued = create_image(server)
    r = httpx.get(f"{server.url}/v2/images/{queued}/extents", headers=MEMBER)
    assert r.status_code == 409 and "has no data" in error_of(r)["message"]
    info = httpx.get(f"{server.url}/v2/info/streamd", headers=MEMBER)
    assert set(info.json()["extensions"]) == {"parallel_stage", "extents"}
    assert show(server, image_id)["size"] == len(data)

"""GET/HEAD /v2/images/{id}/file on a real server: whole images, ranges, validators, limits."""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import time

import httpx
import pytest

from tests.data_client import (
    MEMBER,
    OTHER,
    create_image,
    error_of,
    file_url,
    upload,
)
from tests.servers import ADMIN_HEADERS, ServerProcess

SIZE = 3 * 1024 * 1024 + 1234  # several store reads, not a round number
DATA = random.Random("download").randbytes(SIZE)
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture(scope="module")
def image_id(server: ServerProcess) -> str:
    image_id = create_image(server, visibility="community")
    assert upload(server, image_id, DATA).status_code == 204
    return image_id


def get(server: ServerProcess, image_id: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> httpx.Response:
    return httpx.request(method, file_url(server, image_id), headers={**MEMBER, **(headers or {})})


def test_whole_image(server: ServerProcess, image_id: str) -> None:
    r = get(server, image_id)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-md5"] == MD5  # hex, as Glance sends it
    assert r.headers["etag"] == f'"{MD5}"'
    assert r.headers["accept-ranges"] == "bytes"


def test_other_projects_see_community_images(server: ServerProcess, image_id: str) -> None:
    r = httpx.get(file_url(server, image_id), headers=OTHER)
    assert r.status_code == 200
    assert r.content == DATA


def test_private_image_of_another_project_is_404(server: ServerProcess) -> None:
    private = create_image(server, visibility="private")
    assert upload(server, private, b"secret").status_code == 204
    r = httpx.get(file_url(server, private), headers=OTHER)
    assert r.status_code == 404
    assert "No image found" in error_of(r)["message"]


def test_image_without_data_is_204(server: ServerProcess) -> None:
    queued = create_image(server)
    for method in ("GET", "HEAD"):
        r = get(server, queued, method=method)
        assert r.status_code == 204
        assert r.content == b""


def test_missing_image_is_404(server: ServerProcess) -> None:
    r = get(server, "00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert error_of(r)["title"] == "Not Found"


def test_empty_image(server: ServerProcess) -> None:
    empty = create_image(server)
    assert upload(server, empty, b"").status_code == 204
    r = get(server, empty)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-md5"] == hashlib.md5(b"").hexdigest()
    r = get(server, empty, {"Range": "bytes=0-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1048575-1048577", 1048575, 1048577),  # across a store chunk boundary
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        (f"bytes=-{SIZE + 5}", 0, SIZE - 1),  # a suffix longer than the image: all of it
        (f"bytes={SIZE - 3}-{SIZE + 100}", SIZE - 3, SIZE - 1),  # the end is clipped
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
    ],
)
def test_ranges(server: ServerProcess, image_id: str, header: str, first: int, last: int) -> None:
    r = get(server, image_id, {"Range": header})
    assert r.status_code == 206
    assert r.content == DATA[first : last + 1]
    assert r.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert r.headers["content-length"] == str(last - first + 1)
    assert r.headers["content-md5"] == MD5  # of the whole image, also on 206, as Glance


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}",
                                    "bytes=-0"])
def test_unsatisfiable_range_is_416(server: ServerProcess, image_id: str, header: str) -> None:
    r = get(server, image_id, {"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    assert error_of(r)["code"] in (416, "416 Requested Range Not Satisfiable")


@pytest.mark.parametrize("header", ["bytes=5-2", "bytes=abc", "items=0-1", "bytes=0-1,5-6"])
def test_range_that_can_be_ignored_serves_the_whole_image(
    server: ServerProcess, image_id: str, header: str
) -> None:
    """RFC 9110 lets a server ignore a malformed or multi-part Range (Glance: 400/416)."""
    r = get(server, image_id, {"Range": header})
    assert r.status_code == 200
    assert r.content == DATA


def test_head_has_the_headers_of_get(server: ServerProcess, image_id: str) -> None:
    for headers in ({}, {"Range": "bytes=5-9"}):
        g, h = get(server, image_id, headers), get(server, image_id, headers, method="HEAD")
        assert h.status_code == g.status_code
        assert h.content == b""
        for name in ("content-length", "content-md5", "etag", "content-range", "content-type"):
            assert h.headers.get(name) == g.headers.get(name)


def test_if_match(server: ServerProcess, image_id: str) -> None:
    for value in (f'"{MD5}"', f'"nope", "{MD5}"', "*"):
        assert get(server, image_id, {"If-Match": value}).status_code == 200
    r = get(server, image_id, {"If-Match": '"0123"'})
    assert r.status_code == 412
    assert error_of(r)["title"] == "Precondition Failed"
    assert get(server, image_id, {"If-Match": f'W/"{MD5}"'}).status_code == 412  # strong


def test_if_none_match(server: ServerProcess, image_id: str) -> None:
    r = get(server, image_id, {"If-None-Match": f'W/"{MD5}"'})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == f'"{MD5}"'
    assert get(server, image_id, {"If-None-Match": '"other"'}).status_code == 200


def test_if_range(server: ServerProcess, image_id: str) -> None:
    r = get(server, image_id, {"Range": "bytes=0-9", "If-Range": f'"{MD5}"'})
    assert (r.status_code, r.content) == (206, DATA[:10])
    for stale in ('"other"', "Tue, 24 Nov 2026 10:00:00 GMT"):
        r = get(server, image_id, {"Range": "bytes=0-9", "If-Range": stale})
        assert (r.status_code, r.content) == (200, DATA)


def test_client_that_stops_reading_does_not_stop_the_server(
    server: ServerProcess, image_id: str
) -> None:
    with httpx.stream("GET", file_url(server, image_id), headers=MEMBER) as r:
        next(r.iter_bytes(4096))
    assert get(server, image_id).content == DATA


def test_slow_download_outlives_quarts_response_timeout(make_server) -> None:  # noqa: ANN001
    """Quart's RESPONSE_TIMEOUT (here 1 s) would cut a response; a download taking longer
    arrives whole, so the data route does not go through Quart."""
    srv = make_server(env={"STREAMD_RESPONSE_TIMEOUT": "1", "STREAMD_STORE_THROTTLE_MIB_S": "2",
                           "STREAMD_CHUNK_SIZE": "262144"})
    data = random.Random("slow").randbytes(4 * 1024 * 1024)  # 2 s at 2 MiB/s
    image_id = create_image(srv)
    assert upload(srv, image_id, data).status_code == 204
    started = time.monotonic()
    r = httpx.get(file_url(srv, image_id), headers=MEMBER, timeout=30)
    took = time.monotonic() - started
    assert r.status_code == 200
    assert took > 1.5
    assert r.content == data
    # a client that goes away mid-body: the server stops reading the store for it
    with httpx.stream("GET", file_url(srv, image_id), headers=MEMBER) as r:
        next(r.iter_bytes(4096))
    deadline = time.monotonic() + 5
    while "client gone" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client gone" in srv.log()


def test_deactivated_image_is_403_except_for_admins(server: ServerProcess) -> None:
    image_id = create_image(server)
    assert upload(server, image_id, b"old data").status_code == 204
    # no deactivate route yet: flip the status in the registry, as the action will
    with contextlib.closing(sqlite3.connect(server.data_dir / "registry.sqlite")) as db:
        db.execute("UPDATE images SET status = 'deactivated' WHERE id = ?", (image_id,))
        db.commit()
    r = get(server, image_id)
    assert r.status_code == 403
    assert "deactivated" in error_of(r)["message"]
    r = httpx.get(file_url(server, image_id), headers=ADMIN_HEADERS)
    assert (r.status_code, r.content) == (200, b"old data")

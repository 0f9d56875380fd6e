"""PUT /v2/images/{id}/file on a real server: digests, status changes, Glance's answers."""

from __future__ import annotations

import hashlib
import random
import socket
import time

import httpx
import pytest
import xxhash

from tests.data_client import (
    MEMBER,
    OTHER,
    RawUpload,
    create_image,
    data_files,
    error_of,
    file_url,
    registry_row,
    show,
    temp_files,
    upload,
    wait_for_status,
)
from tests.servers import ServerProcess

CHUNK = 1024 * 1024  # the server's default chunk_size


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12345],
    ids=["0", "1", "chunk-1", "chunk", "chunk+1", "5chunks+"],
)
def test_digests_equal_hashlib_and_xxhash(server: ServerProcess, size: int) -> None:
    data = random.Random(size).randbytes(size)
    image_id = create_image(server)
    r = upload(server, image_id, data)
    assert r.status_code == 204, r.text
    assert r.content == b""
    image = show(server, image_id)
    assert image["status"] == "active"
    assert image["size"] == size
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    row = registry_row(server.data_dir, image_id)
    assert row is not None
    assert row["xxh3"] == xxhash.xxh3_128(data).hexdigest()
    assert row["store"] == "file"
    got = httpx.get(file_url(server, image_id), headers=MEMBER)
    assert got.status_code == 200
    assert got.content == data


def test_chunked_body_without_content_length(server: ServerProcess) -> None:
    data = random.Random(7).randbytes(3 * CHUNK + 17)
    image_id = create_image(server)
    pieces = (data[i : i + 100_000] for i in range(0, len(data), 100_000))
    r = upload(server, image_id, pieces)  # an iterator: httpx sends it chunked
    assert r.status_code == 204, r.text
    image = show(server, image_id)
    assert (image["size"], image["checksum"]) == (len(data), hashlib.md5(data).hexdigest())


def test_content_type_must_be_octet_stream(server: ServerProcess) -> None:
    image_id = create_image(server)
    url = file_url(server, image_id)
    for headers in ({"Content-Type": "text/plain"}, {}):
        r = httpx.put(url, content=b"abc", headers={**MEMBER, **headers})
        assert r.status_code == 415
        assert "application/octet-stream" in error_of(r)["message"]
    # parameters are fine, as in Glance
    r = httpx.put(url, content=b"abc",
                  headers={**MEMBER, "Content-Type": "application/octet-stream; x=y"})
    assert r.status_code == 204
    assert show(server, image_id)["status"] == "active"


def test_upload_to_active_image_is_409(server: ServerProcess) -> None:
    image_id = create_image(server)
    assert upload(server, image_id, b"first").status_code == 204
    r = upload(server, image_id, b"second")
    assert r.status_code == 409
    assert error_of(r)["message"] == "Image status transition from active to saving is not allowed"
    assert show(server, image_id)["size"] == 5


def test_formats_must_be_set_first(server: ServerProcess) -> None:
    image_id = create_image(server, disk_format=None, container_format=None)
    r = upload(server, image_id, b"data")
    assert r.status_code == 400
    assert "disk_format, container_format must be set" in error_of(r)["message"]
    assert show(server, image_id)["status"] == "queued"


def test_who_may_upload(server: ServerProcess) -> None:
    private = create_image(server, visibility="private")
    community = create_image(server, visibility="community")
    assert upload(server, private, b"x", headers=OTHER).status_code == 404
    r = upload(server, community, b"x", headers=OTHER)
    assert r.status_code == 403
    assert error_of(r)["title"] == "Forbidden"
    assert show(server, community)["status"] == "queued"
    missing = "00000000-0000-0000-0000-000000000000"
    assert upload(server, missing, b"x").status_code == 404


def test_other_methods_are_405(server: ServerProcess) -> None:
    image_id = create_image(server)
    r = httpx.delete(file_url(server, image_id), headers=MEMBER)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, PUT"
    assert error_of(r)["title"] == "Method Not Allowed"


def test_size_cap_announced_is_refused_before_reading(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_IMAGE_SIZE_CAP": str(CHUNK)})
    image_id = create_image(srv)
    with RawUpload(srv, image_id, content_length=CHUNK + 1) as raw:
        status, body = raw.response()  # answered with no body byte sent
    assert status == 413
    assert b"too large" in body
    assert show(srv, image_id)["status"] == "queued"


def test_size_cap_exceeded_mid_body(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_IMAGE_SIZE_CAP": str(2 * CHUNK)})
    image_id = create_image(srv)
    data = bytes(range(256)) * (3 * CHUNK // 256)
    pieces = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))  # chunked: no length
    try:
        r = upload(srv, image_id, pieces)
        assert r.status_code == 413
        assert error_of(r)["title"] == "Request Entity Too Large"
    except httpx.TransportError:
        pass  # the server may close before the client has sent everything
    wait_for_status(srv, image_id, "queued")
    assert temp_files(srv.data_dir) == []
    assert data_files(srv.data_dir) == []
    assert upload(srv, image_id, data[: 2 * CHUNK]).status_code == 204
    # the refused request left nothing hanging: the server stops at once, not after the
    # graceful timeout
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("sent", [0, 1, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 5])
def test_disconnect_mid_upload_leaves_image_queued(server: ServerProcess, sent: int) -> None:
    image_id = create_image(server)
    data = random.Random(sent).randbytes(4 * CHUNK)
    with RawUpload(server, image_id, content_length=len(data)) as raw:
        raw.send(data[:sent])
        if sent:
            wait_for_status(server, image_id, "saving")
    wait_for_status(server, image_id, "queued")
    assert temp_files(server.data_dir) == []
    assert registry_row(server.data_dir, image_id)["location"] is None
    # retryable: a fresh upload works, and the server kept serving
    assert upload(server, image_id, data).status_code == 204
    assert show(server, image_id)["checksum"] == hashlib.md5(data).hexdigest()


def test_short_body_then_half_close(server: ServerProcess) -> None:
    image_id = create_image(server)
    with RawUpload(server, image_id, content_length=1000) as raw:
        raw.send(b"x" * 990)
        raw.sock.shutdown(socket.SHUT_WR)  # the client says it is done, 10 bytes short
        try:  # hypercorn answers a truncated body 400; anycorn closes the connection
            assert raw.response()[0] == 400
        except ConnectionError:
            pass
    wait_for_status(server, image_id, "queued")
    assert temp_files(server.data_dir) == []


def test_short_body_then_silence_is_408(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_UPLOAD_IDLE_TIMEOUT": "0.5"})
    image_id = create_image(srv)
    with RawUpload(srv, image_id, content_length=1000) as raw:
        raw.send(b"x" * 990)
        status, body = raw.response()
    assert status == 408
    assert b"no image data arrived" in body
    wait_for_status(srv, image_id, "queued")
    assert temp_files(srv.data_dir) == []


def test_body_longer_than_content_length(server: ServerProcess) -> None:
    """HTTP/1.1 frames the body by Content-Length: the image is the announced bytes, and
    what follows is read as the next request, which is not one: 400 or a closed connection."""
    image_id = create_image(server)
    data = random.Random(3).randbytes(5000)
    with RawUpload(server, image_id, content_length=4000) as raw:
        raw.send(data)
        status, _ = raw.response()
        assert status == 204
        try:
            assert raw.response()[0] == 400
        except ConnectionError:
            pass
    image = show(server, image_id)
    assert (image["size"], image["checksum"]) == (4000, hashlib.md5(data[:4000]).hexdigest())


def test_second_concurrent_upload_is_409(server: ServerProcess) -> None:
    image_id = create_image(server)
    with RawUpload(server, image_id, content_length=2 * CHUNK) as first:
        first.send(b"a" * 1000)
        wait_for_status(server, image_id, "saving")
        r = upload(server, image_id, b"b" * 1000)
        assert r.status_code == 409
        assert "saving" in error_of(r)["message"]
        first.send(b"a" * (2 * CHUNK - 1000))
        assert first.response()[0] == 204
    assert show(server, image_id)["checksum"] == hashlib.md5(b"a" * 2 * CHUNK).hexdigest()


def test_max_transfers_answers_503_with_retry_after(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_MAX_TRANSFERS": "1"})
    busy, waiting, done = create_image(srv), create_image(srv), create_image(srv)
    assert upload(srv, done, b"data").status_code == 204
    with RawUpload(srv, busy, content_length=CHUNK) as raw:
        raw.send(b"a")
        wait_for_status(srv, busy, "saving")
        r = upload(srv, waiting, b"data")
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) > 0
        assert "max_transfers" in error_of(r)["message"]
        assert show(srv, waiting)["status"] == "queued"
        r = httpx.get(file_url(srv, done), headers=MEMBER)  # downloads count too
        assert r.status_code == 503
        raw.send(b"a" * (CHUNK - 1))
        assert raw.response()[0] == 204
    assert upload(srv, waiting, b"data").status_code == 204


def test_delete_during_upload_is_410_and_leaves_no_data(server: ServerProcess) -> None:
    image_id = create_image(server)
    with RawUpload(server, image_id, content_length=8 * CHUNK) as raw:
        raw.send(b"z" * (2 * CHUNK))
        wait_for_status(server, image_id, "saving")
        r = httpx.delete(f"{server.url}/v2/images/{image_id}", headers=MEMBER)
        assert r.status_code == 204
        status, body = raw.response()
    assert status == 410
    assert b"deleted during the upload" in body
    assert registry_row(server.data_dir, image_id) is None
    assert not any(image_id in name for name in data_files(server.data_dir))


def test_delete_removes_the_data(server: ServerProcess) -> None:
    image_id = create_image(server)
    assert upload(server, image_id, b"some bytes").status_code == 204
    assert image_id in data_files(server.data_dir)
    r = httpx.delete(f"{server.url}/v2/images/{image_id}", headers=MEMBER)
    assert r.status_code == 204
    assert image_id not in data_files(server.data_dir)


def test_expect_100_continue(server: ServerProcess) -> None:
    image_id = create_image(server)
    headers = {**MEMBER, "Expect": "100-continue"}
    with RawUpload(server, image_id, content_length=3, headers=headers) as raw:
        assert raw.sock.recv(100).startswith(b"HTTP/1.1 100 ")
        raw.send(b"abc")
        assert raw.response()[0] == 204

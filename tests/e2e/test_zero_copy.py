"""Zero-copy downloads (``os.sendfile``: hypercorn taught ``zerocopysend`` by
streamd/hypercorn_h11.py, the default, and anycorn) and the streaming path beside them
(``zero_copy = false``; object stores).

A real server on each: a download from the file store goes out with ``os.sendfile`` unless
zero copy is off, and from an object store it is streamed; each download logs which
(``via=``). The bytes must be the same either way, for whole images and every range form,
across sendfile windows; a client that goes away frees the file and the transfer slot; an
image deleted while it is served neither breaks the download already under way nor the server.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.data_client import create_image, file_url, upload, wait_for_status
from tests.objectstores import SWIFT_KEY, SWIFT_USER, SwiftServer
from tests.servers import ADMIN_HEADERS, ServerProcess

WINDOW = 64 * 1024  # small sendfile windows: every range below spans several
SIZE = 5 * WINDOW + 4321
DATA = random.Random("zero-copy").randbytes(SIZE)


# (ASGI server, zero_copy setting): how each sends a file-store download
WAYS = {"hypercorn": ("hypercorn", "true"), "anycorn": ("anycorn", "true"),
        "streaming": ("hypercorn", "false")}
SERVERS = ["hypercorn", "anycorn"]  # the two that send with os.sendfile


def _env(way: str, window: int) -> dict[str, str]:
    server, zero_copy = WAYS[way]
    return {"STREAMD_HTTP_SERVER": server, "STREAMD_ZERO_COPY": zero_copy,
            "STREAMD_SENDFILE_WINDOW": str(window)}


@pytest.fixture(scope="module", params=list(WAYS))
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server for each way of sending, with one image of ``DATA``; (server, image id)."""
    data = tmp_path_factory.mktemp(f"zero-copy-{request.param}") / "data"
    env = _env(request.param, WINDOW)
    with ServerProcess(data_dir=data, env=env) as srv:
        image_id = create_image(srv)
        assert upload(srv, image_id, DATA).status_code == 204
        yield srv, image_id


def _vias(srv: ServerProcess, image_id: str) -> list[str]:
    return re.findall(rf"DOWNLOAD image={image_id} .* via=(\w+)", srv.log())


def _wait_for_log(srv: ServerProcess, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, srv.log())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n{srv.log()[-3000:]}")


RANGES = [
    # (Range header, the bytes it names)
    ("bytes=0-0", (0, 1)),
    ("bytes=0-65535", (0, WINDOW)),  # exactly one window
    ("bytes=65535-65536", (WINDOW - 1, WINDOW + 1)),  # across a window's edge
    (f"bytes=1000-{SIZE - 1}", (1000, SIZE)),  # to the last byte, several windows
    ("bytes=70000-", (70000, SIZE)),  # open-ended
    ("bytes=-4321", (SIZE - 4321, SIZE)),  # suffix
    (f"bytes=-{SIZE + 10}", (0, SIZE)),  # suffix longer than the image: all of it
    (f"bytes=100-{SIZE + 500}", (100, SIZE)),  # last byte past the end: clipped
]


def test_whole_image_is_byte_identical(served: tuple[ServerProcess, str]) -> None:
    srv, image_id = served
    r = httpx.get(file_url(srv, image_id), headers=ADMIN_HEADERS)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
    expected = "sendfile" if srv.env["STREAMD_ZERO_COPY"] == "true" else "stream"
    _wait_for_log(srv, rf"DOWNLOAD image={image_id} offset=0 length={SIZE} sent={SIZE} "
                       f"via={expected}")


@pytest.mark.parametrize(("header", "span"), RANGES, ids=[h for h, _ in RANGES])
def test_every_range_form_is_byte_identical(served: tuple[ServerProcess, str], header: str,
                                            span: tuple[int, int]) -> None:
    srv, image_id = served
    r = httpx.get(file_url(srv, image_id), headers={**ADMIN_HEADERS, "Range": header})
    start, end = span
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert r.content == DATA[start:end]


def test_if_range_and_unsatisfiable(served: tuple[ServerProcess, str]) -> None:
    srv, image_id = served
    url = file_url(srv, image_id)
    etag = httpx.head(url, headers=ADMIN_HEADERS).headers["etag"]
    r = httpx.get(url, headers={**ADMIN_HEADERS, "Range": "bytes=10-19", "If-Range": etag})
    assert (r.status_code, r.content) == (206, DATA[10:20])
    r = httpx.get(url, headers={**ADMIN_HEADERS, "Range": "bytes=10-19", "If-Range": '"other"'})
    assert (r.status_code, r.content) == (200, DATA)  # another version: the whole image
    r = httpx.get(url, headers={**ADMIN_HEADERS, "Range": f"bytes={SIZE}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    assert r.json()["error"]["code"] == 416


def test_keep_alive_connection_serves_several_downloads(
        served: tuple[ServerProcess, str]) -> None:
    """The response framing stays right after a sendfile body: the next request on the same
    connection gets its own answer."""
    srv, image_id = served
    with httpx.Client(headers=ADMIN_HEADERS) as client:
        for header, (start, end) in RANGES[:4]:
            r = client.get(file_url(srv, image_id), headers={"Range": header})
            assert r.content == DATA[start:end]
        assert client.get(file_url(srv, image_id)).content == DATA
        assert client.get(f"{srv.url}/v2/images/{image_id}").json()["size"] == SIZE


# -- a client gone mid-sendfile; an image deleted while it is served --------------------------

BIG = 48 * 1024 * 1024  # far more than the socket buffers hold: the send must wait


def _big_image(srv: ServerProcess) -> str:
    image_id = create_image(srv)
    payload = random.Random("big").randbytes(1024 * 1024) * (BIG // (1024 * 1024))
    assert upload(srv, image_id, payload).status_code == 204
    return image_id


def _open_fds_to(pid: int, directory: Path) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def _start_download(srv: ServerProcess, image_id: str) -> socket.socket:
    """A raw GET whose client reads only the first bytes, then stops reading."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    headers = "".join(f"{k}: {v}\r\n" for k, v in ADMIN_HEADERS.items())
    sock.sendall(f"GET /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return sock


@pytest.mark.parametrize("way", SERVERS)
def test_client_gone_mid_sendfile_frees_file_and_slot(make_server, way: str) -> None:  # noqa: ANN001
    srv = make_server(env={**_env(way, 1024 * 1024), "STREAMD_MAX_TRANSFERS": "1"})
    image_id = _big_image(srv)
    images = srv.data_dir / "images"
    sock = _start_download(srv, image_id)
    assert srv.proc is not None
    assert _open_fds_to(srv.proc.pid, images)  # the image file is open while it is sent
    # the only transfer slot is taken
    assert httpx.get(file_url(srv, image_id), headers=ADMIN_HEADERS).status_code == 503
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset, mid-body
    _wait_for_log(srv, rf"DOWNLOAD image={image_id} .*via=sendfile stopped: client gone")
    deadline = time.monotonic() + 10
    while _open_fds_to(srv.proc.pid, images) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_fds_to(srv.proc.pid, images) == []
    # the slot is free again: the next download gets it, whole
    r = httpx.get(file_url(srv, image_id), headers=ADMIN_HEADERS)
    assert r.status_code == 200
    assert len(r.content) == BIG


@pytest.mark.parametrize("way", SERVERS)
def test_image_deleted_while_served(make_server, way: str) -> None:  # noqa: ANN001
    srv = make_server(env=_env(way, 1024 * 1024))
    image_id = _big_image(srv)
    sock = _start_download(srv, image_id)
    r = httpx.delete(f"{srv.url}/v2/images/{image_id}", headers=ADMIN_HEADERS)
    assert r.status_code == 204
    assert not (srv.data_dir / "images" / image_id).exists()
    # the open file keeps the data readable: the download goes on to its end
    sock.settimeout(30)
    got = 0
    while True:
        more = sock.recv(1 << 20)
        if not more:
            break
        got += len(more)
        if got >= BIG:
            break
    sock.close()
    assert got >= BIG  # (headers were read before; this is the body)
    _wait_for_log(srv, rf"DOWNLOAD image={image_id} offset=0 length={BIG} sent={BIG} "
                       "via=sendfile$")
    assert httpx.get(f"{srv.url}/v2/images/{image_id}", headers=ADMIN_HEADERS).status_code == 404
    assert httpx.get(f"{srv.url}/versions").status_code == 200


# -- the streaming fallback: an object-store source --------------------------------------------


@pytest.mark.slow
def test_object_store_source_is_streamed(make_server, swift_server: SwiftServer,  # noqa: ANN001
                                         tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(f"""
[stores.swift1]
type = "swift"
auth_url = "{swift_server.auth_url}"
user = "{SWIFT_USER}"
container = "zero-copy-{os.getpid()}"
cached = false
""")  # not cached: a cached store's complete entries go out with sendfile (test_cache_swift)
    srv = make_server(env={"STREAMD_CONFIG": str(config), "STREAMD_STORES__SWIFT1__KEY": SWIFT_KEY,
                           "STREAMD_SENDFILE_WINDOW": str(WINDOW)})
    image_id = create_image(srv)
    assert upload(srv, image_id, DATA).status_code == 204
    wait_for_status(srv, image_id, "active")
    url = file_url(srv, image_id)
    assert httpx.get(url, headers=ADMIN_HEADERS).content == DATA
    for header, (start, end) in RANGES:
        r = httpx.get(url, headers={**ADMIN_HEADERS, "Range": header})
        assert (r.status_code, r.content) == (206, DATA[start:end]), header
    deadline = time.monotonic() + 10
    while len(_vias(srv, image_id)) < 1 + len(RANGES) and time.monotonic() < deadline:
        time.sleep(0.05)
    vias = _vias(srv, image_id)
    assert len(vias) == 1 + len(RANGES)
    assert set(vias) == {"stream"}

"""What the HTTP layer itself answers (streamd/hypercorn_h11.py), on a raw socket: requests h11
cannot parse get streamd's JSON error envelope instead of an empty body, and a client that
dribbles its headers is cut off after ``header_timeout`` with a 408 (P2.1)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess

HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data: Path = tmp_path_factory.mktemp("http-layer") / "data"
    env = {"STREAMD_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    with ServerProcess(data_dir=data, env=env) as server:
        yield server


def _exchange(srv: ServerProcess, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(request)
        got = b""
        while more := sock.recv(65536):
            got += more
        return got


def _parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert len(body) == int(headers["content-length"])
    return status, headers, json.loads(body)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NOT A REQUEST LINE\r\n\r\n", 400),
    (b"GET /versions HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n", 400),
    # still incomplete past 64 KiB (a request that arrives whole in one read is parsed);
    # nothing more is sent, so the server has read all of it when it closes
    (b"GET /versions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024), 431),
    (b"PUT /v2/images/x/file HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
], ids=["request-line", "header-line", "headers-too-large", "transfer-coding"])
def test_unparsable_requests_get_json_errors(srv: ServerProcess, request_bytes: bytes,
                                             status: int) -> None:
    got_status, headers, body = _parse(_exchange(srv, request_bytes))
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == status and error["message"] and error["title"]
    # and the server goes on serving
    assert httpx.get(srv.url + "/versions").status_code == 200


def test_dribbled_headers_are_cut_off(srv: ServerProcess) -> None:
    """One header byte every 0.2 s would take minutes; the connection gets a 408 after the
    header timeout, counted from the first byte, however often bytes arrive."""
    request = b"GET /versions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        started = time.monotonic()
        sock.setblocking(False)
        got = b""
        for byte in request:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break  # closed by the server
            time.sleep(0.2)
            try:
                got += sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                break
            if got.endswith(b"}"):
                break
        elapsed = time.monotonic() - started
    status, headers, body = _parse(got)
    assert status == 408
    assert body["error"]["code"] == 408  # type: ignore[index]
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT + 3


def test_complete_requests_and_keep_alive_are_untouched(srv: ServerProcess) -> None:
    """The timer stops when the headers are complete: a request whose body takes longer than
    the header timeout, and an idle keep-alive connection, are not cut off."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Roles: admin\r\n"
                     b"X-Project-Id: p\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n{")
        time.sleep(HEADER_TIMEOUT + 0.5)
        sock.sendall(b"}")
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 201"), got[:200]
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle between requests: keep-alive's business
        sock.sendall(b"GET /versions HTTP/1.1\r\nHost: x\r\n\r\n")
        more = b""
        while b"HTTP/1.1 200" not in more:
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            more += chunk

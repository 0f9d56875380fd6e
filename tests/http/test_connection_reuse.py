"""A response sent before the request body was read must not wedge a keep-alive connection."""

from __future__ import annotations

import socket

import httpx

from tests.errors import error_of
from tests.servers import ServerProcess


def _roundtrip(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def test_unknown_route_with_body_keeps_connection_usable(server: ServerProcess) -> None:
    body = b'{"name": "x"}' * 100
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(20):
            head = _roundtrip(sock, b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Type: "
                              b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(body), body))
            assert head.startswith(b"HTTP/1.1 404")
            head = _roundtrip(sock, b"GET /versions HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")


def test_oversized_metadata_body_is_413_and_closes(server: ServerProcess) -> None:
    body = b" " * (17 * 1024 * 1024)
    r = httpx.post(server.url + "/v2/images", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["connection"] == "close"
    assert "16777216" in error_of(r)["message"]
    assert httpx.get(server.url + "/versions").status_code == 200

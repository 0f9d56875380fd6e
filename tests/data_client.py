"""Talking to a test server's image data: images, uploads (also half-sent ones), what is on disk.

``RawUpload`` writes an upload request byte by byte on a plain socket, so a test can stop
anywhere: after the headers, mid-body, past the announced length, or by closing.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.servers import ADMIN_HEADERS, ServerProcess

# a project member: the images it creates are its own (noauth mode trusts these headers)
MEMBER = {"X-Project-Id": "data-project", "X-User-Id": "data-user", "X-Roles": "member"}
OTHER = {"X-Project-Id": "other-project", "X-User-Id": "other-user", "X-Roles": "member"}
OCTET = {"Content-Type": "application/octet-stream"}


def create_image(
    server: ServerProcess, headers: Mapping[str, str] = MEMBER, **fields: Any
) -> str:
    body = {"name": "data-test", "disk_format": "raw", "container_format": "bare", **fields}
    r = httpx.post(server.url + "/v2/images", json=body, headers=dict(headers))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error of a response, ``{"message", "code", "title"}``, checked for shape."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    error = body.get("error", body)
    assert {"message", "code", "title"} <= set(error), body
    return error


def file_url(server: ServerProcess, image_id: str) -> str:
    return f"{server.url}/v2/images/{image_id}/file"


def upload(
    server: ServerProcess, image_id: str, data: Any, headers: Mapping[str, str] = MEMBER,
    timeout: float = 60.0,
) -> httpx.Response:
    return httpx.put(file_url(server, image_id), content=data, headers={**headers, **OCTET},
                     timeout=timeout)


def show(server: ServerProcess, image_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v2/images/{image_id}", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_status(
    server: ServerProcess, image_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        image = show(server, image_id)
        if image["status"] == status or time.monotonic() > deadline:
            assert image["status"] == status, f"still {image['status']} after {timeout}s"
            return image
        time.sleep(0.02)


def registry_row(data_dir: Path, image_id: str) -> dict[str, Any] | None:
    """The image's row, internal columns (xxh3) included, with its first copy's location
    and store, read from SQLite."""
    with contextlib.closing(sqlite3.connect(data_dir / "registry.sqlite")) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT i.*, l.location, l.store FROM images i LEFT JOIN image_locations l "
            "ON l.image_id = i.id WHERE i.id = ? ORDER BY l.created_at, l.store LIMIT 1",
            (image_id,)).fetchone()
        return dict(row) if row else None


def images_dir(data_dir: Path) -> Path:
    return data_dir / "images"


def temp_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in images_dir(data_dir).glob(".*.tmp"))


def data_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in images_dir(data_dir).iterdir())


class RawUpload:
    """``PUT /v2/images/{id}/file`` on a socket of its own, sent a piece at a time."""

    def __init__(
        self,
        server: ServerProcess,
        image_id: str,
        content_length: int | None,
        headers: Mapping[str, str] = MEMBER,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        lines = [f"PUT /v2/images/{image_id}/file HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                 "Content-Type: application/octet-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if content_length is None:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {content_length}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_background(self, data: bytes) -> threading.Thread:
        """Send ``data`` from a thread, so that a response can be read meanwhile; a server
        that stops reading (and closes) ends the sending quietly."""

        def run() -> None:
            with contextlib.suppress(OSError):
                self.sock.sendall(data)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def response(self) -> tuple[int, bytes]:
        """Read one response: its status and its body (Content-Length framed)."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError(f"connection closed after {buf!r}")
            buf += more
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            more = self.sock.recv(65536)
            if not more:
                break
            body += more
        return status, body[:length]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pseudo_random(size: int, seed: int = 0, block: int = 1 << 20) -> Iterator[bytes]:
    """``size`` bytes that do not repeat within a block and are cheap to make: each block
    is a fresh random block's bytes rotated, so no chunk is all zeros or equal to another."""
    import random

    base = random.Random(seed).randbytes(block)
    sent, i = 0, 0
    while sent < size:
        n = min(block, size - sent)
        shift = (i * 7919) % block
        chunk = (base[shift:] + base[:shift])[:n]
        yield chunk
        sent += n
        i += 1

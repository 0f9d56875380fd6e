"""Test helpers for image import: a web server to download from, stage requests, waits.

``WebServer`` is a real HTTP server on loopback in a thread; each path is a ``Route`` that
serves bytes (with or without ``Content-Length``, fast or slowly) or redirects, and counts
what it managed to send, so a test can tell where a download was stopped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.data_client import MEMBER, OCTET, show
from tests.servers import ADMIN_HEADERS, ServerProcess

MiB = 1024 * 1024


@dataclass
class Route:
    """What one path serves: ``data`` (``size`` bytes of it repeated, when given), or a
    redirect to ``location``; ``delay`` seconds between ``block``-byte writes."""

    data: bytes = b""
    size: int | None = None
    content_length: bool = True
    location: str | None = None
    block: int = 256 * 1024
    delay: float = 0.0
    sent: int = 0  # bytes the server wrote before it finished or the client left
    requests: int = 0


@dataclass
class WebServer:
    routes: dict[str, Route] = field(default_factory=dict)
    httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> WebServer:
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route.requests += 1
                if route.location is not None:
                    self.send_response(302)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = len(route.data) if route.size is None else route.size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if route.content_length:
                    self.send_header("Content-Length", str(size))
                else:
                    self.close_connection = True  # HTTP/1.0: the end of data is the close
                self.end_headers()
                pattern = route.data or b"x"
                with contextlib.suppress(OSError):
                    while route.sent < size:
                        n = min(route.block, size - route.sent)
                        start = route.sent % len(pattern)
                        piece = (pattern[start:] + pattern * (n // len(pattern) + 1))[:n]
                        self.wfile.write(piece)
                        route.sent += n
                        if route.delay:
                            time.sleep(route.delay)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@contextlib.contextmanager
def web_server() -> Iterator[WebServer]:
    server = WebServer().start()
    try:
        yield server
    finally:
        server.stop()


# -- the Image API side -------------------------------------------------------------------------


def stage_url(server: ServerProcess, image_id: str) -> str:
    return f"{server.url}/v2/images/{image_id}/stage"


def stage(server: ServerProcess, image_id: str, data: Any, headers: Mapping[str, str] = MEMBER,
          **extra: str) -> httpx.Response:
    return httpx.put(stage_url(server, image_id), content=data,
                     headers={**headers, **OCTET, **extra}, timeout=30)


def staged(server: ServerProcess, image_id: str,
           headers: Mapping[str, str] = MEMBER) -> httpx.Response:
    return httpx.head(stage_url(server, image_id), headers=dict(headers))


def start_import(server: ServerProcess, image_id: str, method: dict[str, Any],
                 headers: Mapping[str, str] = MEMBER, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/images/{image_id}/import",
                      json={"method": method, **body}, headers=dict(headers))


def wait_for_import(server: ServerProcess, image_id: str, timeout: float = 20.0
                    ) -> dict[str, Any]:
    """The image once its import has ended (no longer ``importing``)."""
    deadline = time.monotonic() + timeout
    while True:
        image = show(server, image_id)
        if image["status"] != "importing" and "os_glance_import_task" not in image:
            return image
        assert time.monotonic() < deadline, f"still importing after {timeout}s: {image}"
        time.sleep(0.02)


def image_tasks(server: ServerProcess, image_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/v2/images/{image_id}/tasks", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


class RawStage:
    """``PUT /v2/images/{id}/stage`` on a socket of its own, to be cut off mid-body."""

    def __init__(self, server: ServerProcess, image_id: str, content_length: int,
                 headers: Mapping[str, str] = MEMBER) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        lines = [f"PUT /v2/images/{image_id}/stage HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                 "Content-Type: application/octet-stream", f"Content-Length: {content_length}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cut(self) -> None:
        self.sock.close()

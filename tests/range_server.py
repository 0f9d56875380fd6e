"""A web server on loopback that serves files with byte ranges, for the HTTP store's tests.

``RangeServer`` serves ``files`` (path -> ``File``) from a thread, as a web server would
serve image files: GET with ``Range: bytes=a-b | a- | -n`` (206 + ``Content-Range``, 416 +
``bytes */size`` past the end), HEAD with ``Content-Length``. A ``File`` can behave like the
servers the store must cope with: one that ignores ranges (200 and the whole body), one
whose HEAD tells no length or is refused, one that answers a wrong ``Content-Range``, a
redirect, an error status. Every request is recorded (``requests``) and the body bytes sent
are counted (``sent``), so a test sees what went over the wire.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class File:
    """What the server answers for one path."""

    data: bytes = b""
    ranges: bool = True  # False: a server that ignores Range (200, whole body)
    head: str = "length"  # "length" | "no-length" (200 without it) | "refused" (405)
    content_range: str | None = None  # answered instead of the true one (a broken server)
    redirect: str | None = None  # 302 to this URL
    status: int | None = None  # answered instead of the data (404, 410, 500 …)
    truncate: int | None = None  # close the connection after this many body bytes
    stall: float = 0.0  # seconds to wait before answering (a server that hangs)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RangeServer:
    files: dict[str, File] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    sent: int = 0
    closing: threading.Event = field(default_factory=threading.Event)  # ends stalls
    httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> RangeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                server.requests.append(Request(self.command, self.path, dict(self.headers)))
                f = server.files.get(self.path.split("?", 1)[0])
                if f is not None and f.stall:
                    server.closing.wait(f.stall)
                if f is None or f.status is not None:
                    self._empty(404 if f is None else f.status)
                    return
                if f.redirect is not None:
                    self._empty(302, Location=f.redirect)
                    return
                size = len(f.data)
                if not body:
                    if f.head == "refused":
                        self._empty(405)
                        return
                    self.send_response(200)
                    if f.head == "length":
                        self.send_header("Content-Length", str(size))
                    self.end_headers()
                    return
                start, end = 0, size
                asked = self.headers.get("Range")
                if asked and f.ranges:
                    match = _RANGE.fullmatch(asked)
                    assert match, asked
                    first, last = match[1], match[2]
                    if first:
                        start, end = int(first), min(size, int(last) + 1 if last else size)
                    else:
                        start = max(0, size - int(last))
                    if start >= size:
                        self._empty(416, **{"Content-Range": f"bytes */{size}"})
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f.content_range
                                     or f"bytes {start}-{end - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                piece = f.data[start:end]
                if f.truncate is not None:
                    piece = piece[: f.truncate]
                    self.close_connection = True
                server.sent += len(piece)  # before: the client may be done when it is sent
                with contextlib.suppress(OSError):
                    self.wfile.write(piece)

            def _empty(self, status: int, **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.httpd is not None
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

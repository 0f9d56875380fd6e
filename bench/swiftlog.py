"""Swift's own accounting of what it served: its proxy's access log, received over UDP.

glance-api keeps no count of the bytes it reads from its store, so "how many times did the
store send this image" is asked of Swift. ``SwiftServer(access_log_port=…)`` points the
proxy's ``proxy-logging`` middleware at this listener (``access_log_udp_host/port``, one
syslog datagram per request, in ``TEMPLATE``). Only client requests are counted: the
proxy's own subrequests (SLO's segment reads of a static large object) carry a
``swift.source`` and are left out, so a GET of a 1 GiB SLO counts once, with its 1 GiB.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote

TAG = "BENCHLOG"
# the fields of a line, after TAG; {source} is "-" for a client's own request
TEMPLATE = f"{TAG} {{method}} {{path}} {{status_int}} {{bytes_sent}} {{source}}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # /v1/<account>/<container>/<object>, query string dropped
    status: int
    bytes_sent: int
    source: str  # "-": a client's request; else the middleware that made it (SLO, …)

    @property
    def is_object(self) -> bool:
        return self.path.startswith("/v1/") and self.path.strip("/").count("/") >= 3


def parse(datagram: bytes) -> Request | None:
    """The request one syslog datagram reports, or None (another line)."""
    text = datagram.decode("utf-8", "replace").rstrip("\x00\n")
    _, tag, rest = text.partition(TAG + " ")
    fields = rest.split()
    if not tag or len(fields) < 5:
        return None
    method, path, status, sent, source = fields[:5]
    try:
        return Request(method, unquote(path.split("?", 1)[0]), int(status),
                       int(sent) if sent.isdigit() else 0, source)
    except ValueError:
        return None


class SwiftAccessLog:
    """A UDP listener on loopback collecting the proxy's access log lines, in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[Request] = []
        self.last_seen = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="swift-access-log",
                                        daemon=True)

    def start(self) -> SwiftAccessLog:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            req = parse(data)
            if req is not None:
                with self._lock:
                    self.requests.append(req)
                    self.last_seen = time.monotonic()

    def mark(self) -> int:
        """A point to count from (``client_gets``)."""
        with self._lock:
            return len(self.requests)

    def client_gets(self, since: int, settle: float = 0.5,
                    timeout: float = 10.0) -> tuple[int, int]:
        """(count, bytes sent) of clients' object GETs logged after ``since``.

        A line is sent when the proxy has sent the last byte, about when the client has it:
        wait until no line came for ``settle`` seconds from now (at most ``timeout``)."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            with self._lock:
                quiet = time.monotonic() - max(self.last_seen, start)
            if quiet >= settle:
                break
            time.sleep(settle - quiet)
        with self._lock:
            gets = [r for r in self.requests[since:]
                    if r.method == "GET" and r.source == "-" and r.is_object]
        return len(gets), sum(r.bytes_sent for r in gets)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()

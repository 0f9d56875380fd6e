"""A TCP proxy on loopback that breaks connections on purpose: a store that fails mid-upload.

It forwards bytes between a client and a real server (Swift, moto) and, once the clients
have sent ``reset_after`` bytes in all, resets the connection that crossed the line (RST, by
closing with SO_LINGER 0), once: a transient network fault, after which clean-up requests
get through. Or it resets every connection that sends ``reset_match`` (a fault that
outlasts the client's retries). Or it answers ``fail_status`` to every request whose first
packet contains ``fail_match`` (a store that fails some requests with a 5xx). The server is
real; only the network between is faulty.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

from tests.servers import free_port


@dataclass
class FaultyProxy:
    target_port: int
    reset_after: int | None = None  # client bytes, summed over connections
    fail_match: bytes | None = None  # e.g. b"PUT /v1/" or b"partNumber=2"
    fail_status: int = 503
    reset_match: bytes | None = None  # reset every connection that sends this
    port: int = field(default_factory=free_port)
    sent: int = 0
    resets: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # close() alone does not wake a thread blocked in accept() (Linux): the join would
        # wait out its whole timeout; shutdown() makes that accept() fail at once
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            _reset(client)
            return
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if from_client and self.reset_match is not None and self.reset_match in data:
                    with self._lock:
                        self.resets += 1
                    _reset(src)
                    _reset(dst)
                    return
                if from_client and self.fail_match is not None and self.fail_match in data:
                    with self._lock:
                        self.failed += 1
                    body = b'{"error": "injected failure"}'
                    src.sendall(b"HTTP/1.1 %d Injected\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                % (self.fail_status, len(body), body))
                    _reset(src)
                    _reset(dst)
                    return
                if from_client and self.reset_after is not None:
                    with self._lock:
                        self.sent += len(data)
                        over = self.sent > self.reset_after and not self.resets
                        if over:
                            self.resets += 1
                    if over:
                        _reset(src)
                        _reset(dst)
                        return
                dst.sendall(data)
        except OSError:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass

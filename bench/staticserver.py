"""The practical ceiling: a plain loopback HTTP/1.1 server that does nothing but move bytes.

``GET`` answers with the one file it serves, sent with ``os.sendfile`` (no copy through user
space); ``PUT``/``POST`` receive the body with ``recv_into`` into one reused buffer and drop
it (a sink). One thread per connection, keep-alive. Whatever streamd does beyond this
(parsing, hashing, storing, the registry) is what the ratio against this server shows.

Run it as ``python -m bench.staticserver --file PATH``: it prints its port and serves until
it is terminated.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

RECV_BUFFER = 1024 * 1024  # one recv_into per MiB, like the servers it is compared with
SENDFILE_CHUNK = 64 * 1024 * 1024  # per sendfile call; the kernel loops inside it


def _read_head(conn: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    i = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:i])
    del pending[:i]
    return head


def _serve_connection(conn: socket.socket, path: str) -> None:
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    pending = bytearray()
    size = os.stat(path).st_size
    with conn, open(path, "rb") as f:
        while True:
            head = _read_head(conn, pending)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if method in ("PUT", "POST"):
                got = min(len(pending), length)
                del pending[:got]
                while got < length:
                    n = conn.recv_into(view, min(RECV_BUFFER, length - got))
                    if n == 0:
                        return
                    got += n
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif method in ("GET", "HEAD"):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    + f"Content-Length: {size}\r\n\r\n".encode()
                )
                if method == "GET":
                    offset = 0
                    while offset < size:
                        sent = os.sendfile(
                            conn.fileno(), f.fileno(), offset, min(SENDFILE_CHUNK, size - offset)
                        )
                        if sent == 0:
                            return
                        offset += sent
            else:
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")


def _handle(conn: socket.socket, path: str) -> None:
    try:
        _serve_connection(conn, path)
    except OSError:
        pass  # the client went away


def serve(path: str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``path`` forever; print the bound port on stdout first."""
    listener = socket.create_server((host, port), backlog=128)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_handle, args=(conn, path), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.staticserver", description=__doc__)
    parser.add_argument("--file", required=True, help="the file GET serves")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    try:
        serve(args.file, args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

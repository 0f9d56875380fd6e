"""What ``streamd serve`` claims before it serves: its data dir and its listening socket.

Two servers must never share a data dir: each one's start-up repair takes the other's
uploads in flight for a crash's leftovers (it deletes their temp files and resets their
images). So the primary process holds an exclusive ``flock`` on ``<data_dir>/streamd.lock``
(which names its pid) for its whole life, and its workers inherit the locked file; a second
server is refused at start with the first one's pid. The kernel drops the lock when the last
process holding it exits, however it exits.

Nor may two servers share a port: the primary binds the socket (without ``SO_REUSEPORT``)
and its workers inherit that very socket rather than binding their own, so the port is
taken by exactly one server, and a second one is told so at start.

Every failure here is a ``StartupError``: one line that says what and where.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamd.config import ConfigError

LOCK_NAME = "streamd.lock"


class StartupError(ConfigError):
    """The server cannot start; the message says what and where."""


@contextmanager
def claim_data_dir(data_dir: Path) -> Iterator[int]:
    """Hold the data dir's lock for the block; yields the lock file's descriptor (for the
    workers to inherit). The data dir is created if missing."""
    where = data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StartupError(f"cannot use data dir {where}: {e.strerror} "
                           f"({_what_failed(e, data_dir)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"data dir {where} is in use by another streamd server (pid {other}; it holds "
                f"{where / LOCK_NAME}): stop that server, or give this one another data_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise StartupError(f"cannot use data dir {where}: {e.strerror} (writing "
                               f"{where / LOCK_NAME})") from None
        yield fd
    finally:
        os.close(fd)


def _what_failed(error: OSError, data_dir: Path) -> str:
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return "it, or a parent, is not a directory"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "it must be writable by the server"
    return f"creating it or {LOCK_NAME} in it"


@contextmanager
def listening_socket(bind: str) -> Iterator[socket.socket]:
    """A TCP socket bound to ``host:port`` (the ``bind`` setting), for the primary and its
    workers to serve on; closed after the block."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise StartupError(f"cannot listen on {bind}: {e.strerror}") from None
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepts
            sock.bind((host, int(port)))
        except (OSError, ValueError) as e:
            hint = (" (another server is listening there; stop it or choose another bind)"
                    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE else "")
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise StartupError(f"cannot listen on {bind}: {reason}{hint}") from None
        yield sock

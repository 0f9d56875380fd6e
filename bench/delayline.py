"""A network link with a round-trip delay, for figures where one TCP stream is limited by the
round trip (P2.2: 1, 2, 4 connections over a 20 ms link).

The issue asks for ``tc netem`` on a network-namespace pair; this machine's kernel has no
netem (``tc qdisc add … netem``: "Specified qdisc kind is unknown", and no modules to load).
So the delay is made in user space, at the packet level, where TCP still sees a real path:
the server's side lives in its own network namespace behind a TUN device, the host's side is
a second TUN device, and this process moves every IP packet from one to the other after
``delay`` seconds (a thread per direction). Both ends' TCP stacks, windows and slow start
are the kernel's own; only the wire is ours. The TUN MTU is 64000 so that a few thousand
packets a second carry hundreds of MiB/s through Python.
"""

from __future__ import annotations

import collections
import fcntl
import os
import select
import socket
import struct
import subprocess
import threading
import time
from types import TracebackType

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 64000
HOST_ADDR = "10.77.0.1"
NS_ADDR = "10.77.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


class _Direction(threading.Thread):
    """Packets read from ``src`` are written to ``dst`` ``delay`` seconds later, in order."""

    def __init__(self, src: int, dst: int, delay: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.src, self.dst, self.delay, self.stop = src, dst, delay, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    try:
                        os.write(self.dst, queue.popleft()[1])
                    except BlockingIOError:
                        pass  # the receiving stack is full: the packet is lost, as on a wire
                wait = min(queue[0][0] - now, 0.1) if queue else 0.1
                ready, _, _ = select.select([self.src], [], [], max(wait, 0))
                if ready:
                    arrived = time.monotonic() + self.delay
                    for _ in range(256):
                        try:
                            queue.append((arrived, os.read(self.src, MTU + 64)))
                        except BlockingIOError:
                            break
        except BaseException as e:  # noqa: BLE001 — reported by DelayedLink.__exit__
            self.error = e


class DelayedLink:
    """``with DelayedLink(0.010) as link``: ``link.netns`` is a namespace whose address
    ``NS_ADDR`` the host reaches at ``HOST_ADDR``'s side with ``delay`` each way."""

    def __init__(self, delay: float, name: str = "sdbench") -> None:
        self.delay = delay
        self.netns = name
        self.host_tun = f"{name}h"
        self.ns_tun = f"{name}n"
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._threads: list[_Direction] = []

    def __enter__(self) -> DelayedLink:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        try:
            _ip("netns", "add", self.netns)
            host = _open_tun(self.host_tun)
            inner = _open_tun(self.ns_tun)
            self._fds = [host, inner]
            _ip("link", "set", self.ns_tun, "netns", self.netns)
            _ip("link", "set", self.host_tun, "mtu", str(MTU), "up")
            _ip("addr", "add", HOST_ADDR, "peer", NS_ADDR, "dev", self.host_tun)
            for args in (("link", "set", "lo", "up"),
                         ("link", "set", self.ns_tun, "mtu", str(MTU), "up"),
                         ("addr", "add", NS_ADDR, "peer", HOST_ADDR, "dev", self.ns_tun)):
                _ip("-n", self.netns, *args)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._threads = [_Direction(host, inner, self.delay, self._stop),
                         _Direction(inner, host, self.delay, self._stop)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        errors = [t.error for t in self._threads if t.error is not None]
        if errors and kind is None:
            raise RuntimeError(f"the delay line failed: {errors[0]!r}")

    def prefix(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.netns]


def connect_time(host: str, port: int, tries: int = 5) -> float:
    """The fastest TCP connect to ``host:port`` of ``tries``: one round trip, in seconds."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.monotonic()
        with socket.create_connection((host, port), timeout=10):
            best = min(best, time.monotonic() - t0)
    return best

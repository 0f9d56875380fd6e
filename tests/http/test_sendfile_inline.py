"""``streamd.hypercorn_h11._sendfile``: a small cached window goes out from the event loop in
one ``os.sendfile``; a window that does not fit in the socket buffer, or that is not in the
page cache, goes on (or goes) through the worker thread. Each way the peer gets the file's
exact bytes.

Whether a worker thread was used is read off the sender's ``CapacityLimiter``: a ``RunVar``
that the first threaded send of a trio run creates (each test is a run of its own).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from streamd.hypercorn_h11 import _INLINE_MAX, _limiter, _sendfile

KiB = 1024


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(4 * _INLINE_MAX)
    path = tmp_path / "image"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data
    finally:
        os.close(fd)


def _connected(buffer: int) -> tuple[trio.socket.SocketType, socket.socket]:
    """A loopback TCP connection: trio's end (the server's), and a blocking peer; both
    with ``buffer`` bytes of socket buffer."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.socket()
    for s in (listener, peer):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    peer.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    return trio.socket.from_stdlib_socket(server), peer


def _receive(peer: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        piece = peer.recv(n - len(got))
        assert piece, "the connection closed early"
        got += piece
    return bytes(got)


def _threaded() -> bool:
    try:
        _limiter.get()
    except LookupError:
        return False
    return True


async def test_a_small_cached_window_is_sent_without_a_thread(
        image: tuple[int, bytes]) -> None:
    fd, data = image
    server, peer = _connected(4 * _INLINE_MAX)
    with server, peer:
        offset, count = 3 * KiB + 1, 64 * KiB  # fits the buffer with room to spare
        assert await _sendfile(server, fd, offset, count)
        assert not _threaded()
        assert _receive(peer, count) == data[offset:offset + count]


async def test_a_window_the_buffer_cannot_take_goes_on_in_the_thread(
        image: tuple[int, bytes]) -> None:
    fd, data = image
    server, peer = _connected(64 * KiB)  # the peer reads nothing until the sender waits
    with server, peer:
        offset, count = 5, _INLINE_MAX
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def read_later() -> None:
                await trio.sleep(0.2)
                received.append(await trio.to_thread.run_sync(_receive, peer, count))

            nursery.start_soon(read_later)
            assert await _sendfile(server, fd, offset, count)
        assert _threaded()
        assert received == [data[offset:offset + count]]


async def test_a_window_not_in_the_page_cache_goes_to_the_thread(
        image: tuple[int, bytes]) -> None:
    """``os.sendfile`` of an uncached window would wait for the disk in the event loop."""
    fd, data = image
    os.fsync(fd)
    for _ in range(50):  # pages still in a per-CPU LRU batch are dropped on a later try
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:  # the window's last byte, whose page read-ahead would not bring back
            os.preadv(fd, [bytearray(1)], 4 * _INLINE_MAX - 1, os.RWF_NOWAIT)
        except BlockingIOError:
            break
        await trio.sleep(0.01)
    else:
        pytest.fail("the page cache kept the file's pages: the probe cannot be shown here")
    server, peer = _connected(4 * _INLINE_MAX)
    with server, peer:
        offset, count = 3 * _INLINE_MAX, _INLINE_MAX
        assert await _sendfile(server, fd, offset, count)
        assert _threaded()
        assert _receive(peer, count) == data[offset:offset + count]


async def test_a_file_shorter_than_the_window_is_reported(image: tuple[int, bytes]) -> None:
    fd, data = image
    server, peer = _connected(4 * _INLINE_MAX)
    with server, peer:
        offset = len(data) - 10
        assert not await _sendfile(server, fd, offset, 100)  # the response cannot be whole
        assert _receive(peer, 10) == data[offset:]


# -- the worker thread's blocking socket ---------------------------------------------------------


async def test_the_thread_leaves_the_socket_non_blocking(image: tuple[int, bytes]) -> None:
    """The thread makes the socket blocking for its sends; trio gets it back non-blocking."""
    fd, _ = image
    server, peer = _connected(64 * KiB)
    with server, peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, _receive, peer, 3 * _INLINE_MAX)
            assert await _sendfile(server, fd, 0, 3 * _INLINE_MAX)
        assert _threaded()
        assert not os.get_blocking(server.fileno())  # trio's reads never wait in the kernel


async def test_a_read_while_the_thread_waits_for_room_does_not_hold_the_event_loop(
        image: tuple[int, bytes]) -> None:
    """While the thread waits on a peer that reads nothing, trio reads the same socket (as
    hypercorn does, for a pipelined request or the client's close): the read waits without
    holding the event loop, and gets what the peer sends."""
    fd, data = image
    server, peer = _connected(64 * KiB)
    with server, peer:
        gaps: list[float] = []
        got: list[bytes] = []

        async def ticker(done: trio.Event) -> None:
            last = trio.current_time()
            while not done.is_set():
                await trio.sleep(0.005)
                now = trio.current_time()
                gaps.append(now - last)
                last = now

        async def read_meanwhile(read_done: trio.Event) -> None:
            await trio.sleep(0.1)  # the thread is blocked in the kernel by now
            got.append(await server.recv(100))
            read_done.set()

        done, read = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker, done)
            nursery.start_soon(read_meanwhile, read)

            async def peer_side() -> None:
                await trio.sleep(0.3)
                await trio.to_thread.run_sync(peer.sendall, b"GET / HTTP/1.1\r\n")
                await read.wait()
                received = await trio.to_thread.run_sync(_receive, peer, 3 * _INLINE_MAX)
                assert received == data[: 3 * _INLINE_MAX]

            nursery.start_soon(peer_side)
            assert await _sendfile(server, fd, 0, 3 * _INLINE_MAX)
            done.set()
        assert got == [b"GET / HTTP/1.1\r\n"]
        assert max(gaps) < 0.1, max(gaps)  # a few clock ticks at most, never the send
        assert not os.get_blocking(server.fileno())


async def test_a_cancel_stops_a_thread_that_waits_for_room(image: tuple[int, bytes]) -> None:
    """A client that stops reading, then the download cancelled (client gone, shutdown): the
    thread sees it within the send timeout, and the socket is non-blocking again."""
    fd, _ = image
    server, peer = _connected(64 * KiB)
    with server, peer:
        with trio.move_on_after(0.3) as scope:
            await _sendfile(server, fd, 0, 4 * _INLINE_MAX)
        assert scope.cancelled_caught
        assert trio.current_time() - scope.deadline < 1.0  # _POLL_MS, with room for a slow host
        assert not os.get_blocking(server.fileno())

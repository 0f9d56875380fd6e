"""A client gone in the middle of a ``zerocopysend`` body, in memory: whichever task sees it
first (the server's ``os.sendfile`` failing in the app's task, or the reader's
``http.disconnect``), the download stops short and says so.

The order is trio's to choose; under load the app's own ``sendfile`` often saw the reset
first, the server returned as if the window had gone out, and the app, which yields only in
the server's ``send``, went through every remaining window before its disconnect watch ran,
then ended the response, which h11 refused (too little data for the Content-Length):
tests/e2e/test_zero_copy.py failed 1 run in 3. These tests fix that order by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.protocol.http_stream import ASGIHTTPState

from streamd.http import data
from streamd.http.data import _send_file
from streamd.http.rawasgi import Response
from streamd.hypercorn_h11 import ClientDisconnected, _FileBody, _zero_copy_send
from streamd.io import OpenFile

WINDOW = 1024


class _Stream:
    """The parts of hypercorn's ``HTTPStream`` that ``_zero_copy_send`` uses; its ``send``
    plays the TCP server, which closes the stream when ``os.sendfile`` fails."""

    def __init__(self, fail_at: int) -> None:
        self.state = ASGIHTTPState.RESPONSE
        self.closed = False
        self.stream_id = 1
        self.scope = {"method": "GET"}
        self.response = {"status": 200}
        self.bodies: list[_FileBody] = []
        self.ended = False
        self._fail_at = fail_at

    async def send(self, event: _FileBody) -> None:
        await trio.lowlevel.checkpoint()
        if len(self.bodies) == self._fail_at:
            self.closed = True  # ZeroCopyTCPServer._abandon: Closed() closes the stream
            return
        self.bodies.append(event)
        event.outcome.complete = True

    async def _send_closed(self) -> None:
        self.ended = True


async def _never(message: Any) -> None:
    raise AssertionError(f"not a zerocopysend: {message}")


@pytest.fixture(autouse=True)
def one_window_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file below is in the page cache, where ``_send_file`` would send up to
    ``CACHED_WINDOWS`` windows per call; these tests count single windows."""
    monkeypatch.setattr(data, "CACHED_WINDOWS", 1)


@pytest.fixture
def image(tmp_path: Path) -> Iterator[OpenFile]:
    path = tmp_path / "image"
    path.write_bytes(os.urandom(10 * WINDOW + 7))
    opened = OpenFile(os.open(path, os.O_RDONLY), path.stat().st_size)
    with opened:
        yield opened


async def test_a_window_cut_short_raises_an_oserror(image: OpenFile) -> None:
    stream = _Stream(fail_at=0)
    send = _zero_copy_send(stream, _never)  # type: ignore[arg-type]
    message = {"type": "http.response.zerocopysend", "file": image, "offset": 0,
               "count": WINDOW, "more_body": False}
    with pytest.raises(ClientDisconnected) as raised:
        await send(message)
    assert isinstance(raised.value, OSError)  # ASGI 2.4: send on a closed connection
    assert not stream.ended  # no end of a response that is not whole
    with pytest.raises(ClientDisconnected):  # and so is every later one
        await send(message)


async def _never_disconnects() -> dict[str, Any]:
    await trio.sleep_forever()
    raise AssertionError


@pytest.mark.parametrize("fail_at", [0, 3, 9, 10])
async def test_download_stops_short_when_the_server_finds_the_client_gone(
        image: OpenFile, fail_at: int) -> None:
    """The app's disconnect watch never fires: only the server's OSError tells it, on a
    middle window or the last (window 10 of 0..10: sent outside the watch)."""
    stream = _Stream(fail_at=fail_at)
    response = Response(_zero_copy_send(stream, _never))  # type: ignore[arg-type]
    sent = await _send_file(image, 0, image.size, _never_disconnects, response, window=WINDOW)
    assert sent == fail_at * WINDOW
    assert [b.offset for b in stream.bodies] == [n * WINDOW for n in range(fail_at)]
    assert not stream.ended


async def test_a_whole_download_ends_the_response(image: OpenFile) -> None:
    stream = _Stream(fail_at=-1)
    response = Response(_zero_copy_send(stream, _never))  # type: ignore[arg-type]
    sent = await _send_file(image, 0, image.size, _never_disconnects, response, window=WINDOW)
    assert sent == image.size
    assert sum(b.count for b in stream.bodies) == image.size
    assert stream.ended


class _HangUpAfterAll(_Stream):
    """A client that hangs up as soon as it has the last byte, before ``send`` returns: the
    stream is closed, yet every byte went out."""

    async def send(self, event: _FileBody) -> None:
        await super().send(event)
        if sum(b.count for b in self.bodies) == 10 * WINDOW + 7:
            self.closed = True


async def test_a_client_that_hangs_up_with_every_byte_got_them_all(image: OpenFile) -> None:
    stream = _HangUpAfterAll(fail_at=-1)
    response = Response(_zero_copy_send(stream, _never))  # type: ignore[arg-type]
    sent = await _send_file(image, 0, image.size, _never_disconnects, response, window=WINDOW)
    assert sent == image.size  # a whole download, not "client gone"


@pytest.mark.parametrize("windows", [1, 4])
async def test_cached_bytes_go_several_windows_per_call(
        image: OpenFile, monkeypatch: pytest.MonkeyPatch, windows: int) -> None:
    """In the page cache, each call carries up to ``CACHED_WINDOWS`` windows; the last
    call ends the response with what is left."""
    monkeypatch.setattr(data, "CACHED_WINDOWS", windows)
    stream = _Stream(fail_at=-1)
    response = Response(_zero_copy_send(stream, _never))  # type: ignore[arg-type]
    sent = await _send_file(image, 0, image.size, _never_disconnects, response, window=WINDOW)
    assert sent == image.size
    span = windows * WINDOW
    expected = [(o, min(span, image.size - o)) for o in range(0, image.size, span)]
    assert [(b.offset, b.count) for b in stream.bodies] == expected
    assert stream.ended


async def test_bytes_not_in_the_page_cache_go_one_window_per_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the span's last byte is not cached, a window at a time (each read ahead while
    the one before goes out)."""
    monkeypatch.setattr(data, "CACHED_WINDOWS", 8)
    path = tmp_path / "image"
    path.write_bytes(os.urandom(10 * WINDOW + 7))
    with OpenFile(os.open(path, os.O_RDONLY), path.stat().st_size) as image:
        monkeypatch.setattr(image, "cached", lambda offset, length: False)
        stream = _Stream(fail_at=-1)
        response = Response(_zero_copy_send(stream, _never))  # type: ignore[arg-type]
        sent = await _send_file(image, 0, image.size, _never_disconnects, response,
                                window=WINDOW)
    assert sent == image.size
    assert [b.count for b in stream.bodies] == [WINDOW] * 10 + [7]

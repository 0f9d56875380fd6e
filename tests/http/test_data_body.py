"""RequestBody (ASGI receive() as a ByteSource) and the data routes' header logic, in memory."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from streamd.http.data import _if_range_holds, _matches
from streamd.http.rawasgi import BodyStalled, Headers, RequestBody
from streamd.io import BytesSource, MemoryStore, SourceAborted, store_stream


class FakeReceive:
    """ASGI ``receive`` over a list of messages; counts how many were asked for."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if not self.messages:
            await trio.sleep_forever()
        return self.messages.pop(0)


def body(*parts: bytes, end: bool = True) -> list[dict[str, Any]]:
    msgs = [{"type": "http.request", "body": p, "more_body": True} for p in parts]
    if end:
        msgs.append({"type": "http.request", "body": b"", "more_body": False})
    return msgs


async def read_all(source: RequestBody, size: int) -> bytes:
    buf = memoryview(bytearray(size))
    out = bytearray()
    while n := await source.readinto(buf):
        out += buf[:n]
    return bytes(out)


async def test_reads_across_message_boundaries_and_keeps_leftovers() -> None:
    receive = FakeReceive(body(b"abcdefg", b"", b"hij"))
    source = RequestBody(receive)
    buf = memoryview(bytearray(3))
    got = []
    while n := await source.readinto(buf):
        got.append(bytes(buf[:n]))
    assert got == [b"abc", b"def", b"g", b"hij"]  # never more than one message at a time
    assert source.received == 10
    assert source.complete


async def test_receives_only_when_asked() -> None:
    """Back-pressure: a message is pulled only once the previous one is used up."""
    receive = FakeReceive(body(b"x" * 10, b"y" * 10))
    source = RequestBody(receive)
    buf = memoryview(bytearray(4))
    await source.readinto(buf)
    assert receive.calls == 1
    await source.readinto(buf)
    await source.readinto(buf)  # 2 bytes left of the first message
    assert receive.calls == 1
    await source.readinto(buf)
    assert receive.calls == 2


async def test_after_the_last_message_it_reports_eof_without_receiving() -> None:
    receive = FakeReceive([{"type": "http.request", "body": b"all", "more_body": False}])
    source = RequestBody(receive)
    assert await read_all(source, 16) == b"all"
    assert await source.readinto(memoryview(bytearray(4))) == 0
    assert receive.calls == 1


async def test_disconnect_is_source_aborted() -> None:
    receive = FakeReceive([*body(b"part", end=False), {"type": "http.disconnect"}])
    source = RequestBody(receive)
    with pytest.raises(SourceAborted):
        await read_all(source, 16)
    assert source.disconnected
    assert not source.complete


async def test_silence_past_the_idle_timeout_is_408(autojump_clock: trio.testing.MockClock) -> None:
    receive = FakeReceive(body(b"part", end=False))  # then nothing, ever
    source = RequestBody(receive, idle_timeout=30)
    started = trio.current_time()
    with pytest.raises(BodyStalled) as caught:
        await read_all(source, 16)
    assert trio.current_time() - started == pytest.approx(30)
    assert caught.value.status == 408


async def test_discard_until_disconnect() -> None:
    receive = FakeReceive([*body(b"a", b"b", end=False), {"type": "http.disconnect"}])
    source = RequestBody(receive)
    await source.discard_until_disconnect()
    assert source.disconnected and receive.calls == 3


@pytest.mark.parametrize("size", [0, 5, 64 * 1024, 64 * 1024 + 1])
async def test_feeds_the_upload_pipeline(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    parts = [data[i : i + 10_000] for i in range(0, size, 10_000)]
    store = MemoryStore()
    result = await store_stream(RequestBody(FakeReceive(body(*parts))), store, key="k",
                                chunk_size=4096, queue_depth=2, expected_size=size)
    expected = await store_stream(BytesSource(data), MemoryStore(), key="k", chunk_size=4096)
    assert (result.size, result.checksum) == (size, expected.checksum)
    assert store.objects["k"] == data


def test_headers_are_case_insensitive_and_joined() -> None:
    h = Headers([(b"x-project-id", b"p"), (b"accept", b"a"), (b"accept", b"b")])
    assert h.get("X-Project-Id") == "p"
    assert h.get("Accept") == "a, b"
    assert h.get("missing") is None


def test_etag_matching() -> None:
    etag = '"abc"'
    assert _matches('"abc"', etag, weak=False)
    assert _matches('"x", "abc"', etag, weak=False)
    assert _matches("*", etag, weak=False)
    assert not _matches('W/"abc"', etag, weak=False)
    assert _matches('W/"abc"', etag, weak=True)
    assert not _matches("*", None, weak=True)
    assert _if_range_holds(None, etag)
    assert _if_range_holds(' "abc" ', etag)
    assert not _if_range_holds('"old"', etag)
    assert not _if_range_holds("Tue, 24 Nov 2026 10:00:00 GMT", etag)

"""The HTTP store against a real web server on loopback (``tests.range_server``): exact
bytes for every range shape, from servers that honour ranges and from one that ignores them;
sizes from HEAD or a one-byte GET; the store's errors; read-only; and web-download's SSRF
filters on every request and redirect hop (loopback reachable only by an explicit
allowance, as ``web_download_private_hosts``)."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import httpx
import pytest

from streamd.io import ObjectNotFound, StoreError
from streamd.io.errors import StoreReadOnly
from streamd.io.stores.http import HttpStore
from streamd.io.url_filter import UriRefused, UrlFilter
from streamd.units import KiB
from tests.range_server import File, RangeServer
from tests.servers import free_port

C = 16 * KiB
SIZE = 3 * C + 5
DATA = random.Random(0).randbytes(SIZE)
LOOPBACK = UrlFilter(allowed_ports=(), private_hosts=("127.0.0.1",))


@pytest.fixture
def origin() -> Iterator[RangeServer]:
    files = {
        "/image.raw": File(DATA),
        "/no-ranges.raw": File(DATA, ranges=False),
        "/empty.raw": File(b""),
    }
    with RangeServer(files) as server:
        yield server


@pytest.fixture
async def store() -> AsyncIterator[HttpStore]:
    store = HttpStore("web", url_filter=LOOPBACK)
    yield store
    await store.aclose()


async def read_all(store: HttpStore, location: str, offset: int = 0,
                   length: int | None = None) -> bytes:
    out = bytearray()
    async with aclosing(store.read(location, offset, length)) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


def test_capabilities() -> None:
    caps = HttpStore.capabilities
    assert caps.read_only and caps.ranged_reads and not caps.sparse_writes


async def test_whole_read_sends_no_range(origin: RangeServer, store: HttpStore) -> None:
    assert await read_all(store, origin.url("/image.raw")) == DATA
    [request] = origin.requests
    assert request.method == "GET" and "Range" not in request.headers
    assert await read_all(store, origin.url("/empty.raw")) == b""


@pytest.mark.parametrize("path", ["/image.raw", "/no-ranges.raw"])
async def test_every_range(origin: RangeServer, store: HttpStore, path: str,
                           caplog: pytest.LogCaptureFixture) -> None:
    points = sorted({0, 1, C - 1, C, C + 1, 2 * C, SIZE - 1, SIZE})
    lengths = [0, 1, C - 1, C, C + 1, 2 * C + 3, None]
    checked = 0
    for offset in points:
        for length in lengths:
            if length is not None and offset + length > SIZE:
                continue
            end = SIZE if length is None else offset + length
            before = origin.sent
            with caplog.at_level(logging.INFO, logger="streamd.io.stores.http"):
                caplog.clear()
                got = await read_all(store, origin.url(path), offset, length)
            assert got == DATA[offset:end], (offset, length)
            ranged = offset > 0 or length is not None
            ignored = "ignores ranges" in caplog.text
            if path == "/image.raw":
                assert origin.sent - before == end - offset, (offset, length)  # only the range
                assert not ignored
            else:
                assert ignored == (ranged and length != 0), (offset, length)
            checked += 1
    assert checked > 40


async def test_the_range_asked_is_the_range_sent(origin: RangeServer, store: HttpStore) -> None:
    await read_all(store, origin.url("/image.raw"), 10, 20)
    await read_all(store, origin.url("/image.raw"), 10)
    assert [r.headers["Range"] for r in origin.requests] == ["bytes=10-29", "bytes=10-"]


@pytest.mark.parametrize("path", ["/image.raw", "/no-ranges.raw"])
@pytest.mark.parametrize(("offset", "length"),
                         [(-1, None), (0, -1), (10, SIZE), (SIZE + 1, None), (SIZE + 1, 0)])
async def test_range_outside_object_is_a_caller_bug(
    origin: RangeServer, store: HttpStore, path: str, offset: int, length: int | None
) -> None:
    with pytest.raises(ValueError):
        await read_all(store, origin.url(path), offset, length)


async def test_stat_asks_head(origin: RangeServer, store: HttpStore) -> None:
    assert await store.stat(origin.url("/image.raw")) == SIZE
    assert await store.stat(origin.url("/empty.raw")) == 0
    assert [r.method for r in origin.requests] == ["HEAD", "HEAD"]


@pytest.mark.parametrize("head", ["no-length", "refused"])
@pytest.mark.parametrize(("data", "ranges"), [(DATA, True), (b"", True), (DATA, False)])
async def test_stat_falls_back_to_a_one_byte_get(
    origin: RangeServer, store: HttpStore, head: str, data: bytes, ranges: bool
) -> None:
    origin.files["/f"] = File(data, head=head, ranges=ranges)
    assert await store.stat(origin.url("/f")) == len(data)
    head_request, get = origin.requests
    assert (head_request.method, get.method) == ("HEAD", "GET")
    assert get.headers["Range"] == "bytes=0-0"


@pytest.mark.parametrize("status", [404, 410])
async def test_missing_is_not_found(origin: RangeServer, store: HttpStore, status: int) -> None:
    origin.files["/gone"] = File(status=status)
    for location in (origin.url("/gone"), origin.url("/nothing-here")):
        with pytest.raises(ObjectNotFound, match="'web'"):
            await store.stat(location)
        with pytest.raises(ObjectNotFound):
            await read_all(store, location)
        with pytest.raises(ObjectNotFound):
            await read_all(store, location, 5, 0)


async def test_errors_name_the_store_not_the_credentials(origin: RangeServer,
                                                         store: HttpStore) -> None:
    origin.files["/broken"] = File(status=500)
    location = origin.url("/broken").replace("//", "//user:s3cret@") + "?sig=t0ken"
    for call in (store.stat(location), read_all(store, location, 3, 4)):
        with pytest.raises(StoreError) as failed:
            await call
        assert failed.value.status == 503
        assert "'web'" in failed.value.message and "500" in failed.value.message
        assert "s3cret" not in failed.value.message and "t0ken" not in failed.value.message
    assert all(r.headers["Authorization"] == "Basic dXNlcjpzM2NyZXQ=" for r in origin.requests)


async def test_a_server_that_is_down(store: HttpStore) -> None:
    location = f"http://127.0.0.1:{free_port()}/image.raw"
    with pytest.raises(StoreError, match="'web' could not fetch from 127.0.0.1"):
        await store.stat(location)
    with pytest.raises(StoreError, match="could not fetch from"):
        await read_all(store, location)


async def test_a_server_that_hangs(origin: RangeServer) -> None:
    origin.files["/slow"] = File(DATA, stall=2.0)
    store = HttpStore("web", url_filter=LOOPBACK, timeout=httpx.Timeout(0.2))
    try:
        with pytest.raises(StoreError, match="no answer in time .ReadTimeout"):
            await read_all(store, origin.url("/slow"))
    finally:
        await store.aclose()


async def test_a_wrong_content_range(origin: RangeServer, store: HttpStore) -> None:
    origin.files["/liar"] = File(DATA, content_range=f"bytes 0-9/{SIZE}")
    with pytest.raises(StoreError, match="answered Content-Range 'bytes 0-9/"):
        await read_all(store, origin.url("/liar"), 100, 10)
    origin.files["/multi"] = File(DATA, content_range="bytes 0-9,20-29/100")
    with pytest.raises(StoreError, match="not one byte range"):
        await read_all(store, origin.url("/multi"), 0, 10)


@pytest.mark.parametrize(("offset", "length"), [(0, None), (0, 100), (5, 50)])
async def test_a_body_that_ends_early(origin: RangeServer, store: HttpStore, offset: int,
                                      length: int | None) -> None:
    origin.files["/cut"] = File(DATA, truncate=10)
    with pytest.raises(StoreError, match="broke off after"):
        await read_all(store, origin.url("/cut"), offset, length)


async def test_write_is_refused(store: HttpStore) -> None:
    taken = 0

    async def chunks() -> AsyncIterator[memoryview]:
        nonlocal taken
        taken += 1
        yield memoryview(b"x")

    with pytest.raises(StoreReadOnly, match="'web' is read-only") as refused:
        await store.write(chunks(), key="img")
    assert refused.value.status == 410
    assert taken == 0


async def test_delete_does_nothing(origin: RangeServer, store: HttpStore) -> None:
    await store.delete(origin.url("/image.raw"))
    assert origin.requests == []
    assert await read_all(store, origin.url("/image.raw"), 0, 3) == DATA[:3]


async def test_redirects_are_followed_and_every_hop_filtered(origin: RangeServer,
                                                              store: HttpStore) -> None:
    origin.files["/moved"] = File(redirect="/image.raw")
    assert await read_all(store, origin.url("/moved"), 7, 9) == DATA[7:16]
    assert await store.stat(origin.url("/moved")) == SIZE
    assert [r.headers.get("Range") for r in origin.requests] == ["bytes=7-15", "bytes=7-15",
                                                                 None, None]
    origin.requests.clear()
    # localhost is loopback too, but only 127.0.0.1 is allowed
    origin.files["/away"] = File(redirect=origin.url("/image.raw", host="localhost"))
    with pytest.raises(StoreError, match="refuses.*'localhost'.*loopback"):
        await read_all(store, origin.url("/away"))
    assert [r.path for r in origin.requests] == ["/away"]  # the hop was never fetched

    origin.files["/loop"] = File(redirect="/loop")
    with pytest.raises(StoreError, match="redirects more than 5 times"):
        await store.stat(origin.url("/loop"))


async def test_a_redirect_to_a_disallowed_host(origin: RangeServer) -> None:
    rules = UrlFilter(allowed_ports=(), private_hosts=("*",), disallowed_hosts=("localhost",))
    store = HttpStore("web", url_filter=rules)
    origin.files["/away"] = File(redirect=origin.url("/image.raw", host="localhost"))
    try:
        assert await store.stat(origin.url("/image.raw")) == SIZE
        with pytest.raises(StoreError, match="'localhost' is disallowed"):
            await store.stat(origin.url("/away"))
    finally:
        await store.aclose()
    assert [r.path for r in origin.requests] == ["/image.raw", "/away"]


@pytest.mark.parametrize(("rules", "why"), [
    (UrlFilter(), "port"),  # Glance's default ports: 80 and 443
    (UrlFilter(allowed_ports=()), "loopback address; store 'web' fetches only from public"),
    (UrlFilter(allowed_ports=(), allowed_hosts=("mirror.test",)), "not one of the allowed"),
    (UrlFilter(allowed_ports=(), private_hosts=("*",), allowed_schemes=("https",)),
     "scheme 'http' is not allowed"),
])
async def test_filters_apply_to_every_request(origin: RangeServer, rules: UrlFilter,
                                              why: str) -> None:
    store = HttpStore("web", url_filter=rules)
    try:
        for call in (store.stat(origin.url("/image.raw")),
                     read_all(store, origin.url("/image.raw"), 1, 2)):
            with pytest.raises(StoreError, match=why):
                await call
        with pytest.raises(UriRefused, match=why):
            await store.check_location(origin.url("/image.raw"))
    finally:
        await store.aclose()
    assert origin.requests == []


async def test_check_location(origin: RangeServer, store: HttpStore) -> None:
    await store.check_location(origin.url("/image.raw"))
    with pytest.raises(UriRefused, match="scheme 'file'"):
        await store.check_location("file:///etc/passwd")


async def test_aclose_closes_the_client() -> None:
    store = HttpStore(url_filter=LOOPBACK)
    await store.aclose()
    with pytest.raises(RuntimeError):
        await store._client.get("http://127.0.0.1:9/")

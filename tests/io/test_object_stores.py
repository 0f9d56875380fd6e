"""Swift and S3 beyond the conformance suite: large objects, faults, credentials, sweeps.

Against the session's real Swift (Swift API and its s3api) and moto's S3 server; faults come
from ``FaultyProxy``, a TCP proxy between the store and the real server.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest

from streamd.io import StoreError
from streamd.io.stores.s3 import S3Settings, S3Store
from streamd.io.stores.swift import SwiftCredentials, SwiftStore
from streamd.units import MiB
from tests.faulty_proxy import FaultyProxy
from tests.io.conftest import swift_leftovers
from tests.objectstores import SWIFT_KEY, SWIFT_USER, SwiftServer

pytestmark = pytest.mark.slow


async def feed(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[memoryview]:
    """``data`` from one reused buffer, like the pipeline (a kept view sees garbage)."""
    buf = bytearray(chunk)
    for pos in range(0, len(data), chunk):
        n = min(chunk, len(data) - pos)
        buf[:n] = data[pos:pos + n]
        yield memoryview(buf)[:n]
        buf[:n] = b"\xee" * n


async def read_all(store, location: str, offset: int = 0, length: int | None = None) -> bytes:
    out = bytearray()
    async with aclosing(store.read(location, offset, length)) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


def swift_store(swift: SwiftServer, *, endpoint: str | None = None, key: str = SWIFT_KEY,
                segment_size: int = 1 * MiB) -> SwiftStore:
    auth_url = f"{endpoint or swift.endpoint}/auth/v1.0"
    return SwiftStore("swift1", SwiftCredentials(auth_url=auth_url, user=SWIFT_USER, key=key),
                      container=f"c-{uuid.uuid4().hex[:12]}", segment_size=segment_size)


def s3_store(endpoint: str, access: str, secret: str, bucket: str | None = None) -> S3Store:
    return S3Store("s3a", S3Settings(bucket=bucket or f"b-{uuid.uuid4().hex[:12]}",
                                     endpoint_url=endpoint, access_key=access,
                                     secret_key=secret), part_size=5 * MiB)


@pytest.fixture(params=["swift-s3api", "moto"])
def s3_server(request: pytest.FixtureRequest) -> tuple[str, str, str, int]:
    """(endpoint, access key, secret key, port) of a real S3 server."""
    if request.param == "moto":
        moto = request.getfixturevalue("moto_server")
        return moto.endpoint, "testing", "testing", moto.port
    swift = request.getfixturevalue("swift_server")
    return swift.endpoint, SWIFT_USER, SWIFT_KEY, swift.proxy_port


@pytest.mark.parametrize("announced", [True, False])
async def test_swift_large_object_in_segments(swift_server: SwiftServer, announced: bool) -> None:
    store = swift_store(swift_server)
    data = random.Random(1).randbytes(3 * MiB + 12345)
    stored = await store.write(feed(data), key="big", size=len(data) if announced else None)
    assert stored.size == len(data) and await store.stat(stored.location) == len(data)
    names = await store.list_names()
    assert sum(n.startswith(f"{store.segments}/big/") for n in names) == 4
    assert await read_all(store, stored.location) == data
    # a range across a segment boundary
    assert await read_all(store, stored.location, MiB - 10, 20) == data[MiB - 10:MiB + 10]
    # replaced by a small object: the old segments go
    await store.write(feed(b"small"), key="big", size=5)
    assert await store.list_names() == ["big"]
    await store.delete(stored.location)
    assert await store.list_names() == []
    await store.aclose()


async def test_swift_large_object_read_segment_by_segment(swift_server: SwiftServer) -> None:
    """A large object is read from its segments, not through its manifest: a read checks
    only the segments it touches, and a segment that is not the one the manifest names
    (another etag) is refused, as Swift's SLO middleware refuses it."""
    store = swift_store(swift_server)
    data = random.Random(3).randbytes(2 * MiB + 99)
    stored = await store.write(feed(data), key="segs", size=len(data))
    assert await read_all(store, stored.location, MiB - 1, MiB + 50) == data[MiB - 1:2 * MiB + 49]
    url, token = swift_server.token()
    async with httpx.AsyncClient() as client:
        manifest = (await client.get(f"{url}/{store.container}/segs?multipart-manifest=get",
                                     headers={"X-Auth-Token": token})).json()
        put = await client.put(url + manifest[1]["name"], content=b"x" * manifest[1]["bytes"],
                               headers={"X-Auth-Token": token})
        assert put.status_code == 201
    assert await read_all(store, stored.location, 0, MiB) == data[:MiB]
    with pytest.raises(StoreError, match="swift1.*etag differs"):
        await read_all(store, stored.location)
    await store.delete(stored.location)
    await store.aclose()


async def test_s3_multipart_upload(s3_server: tuple[str, str, str, int]) -> None:
    endpoint, access, secret, _ = s3_server
    store = s3_store(endpoint, access, secret)
    data = random.Random(2).randbytes(11 * MiB + 7)
    stored = await store.write(feed(data), key="big")
    assert stored.size == len(data) and await store.stat(stored.location) == len(data)
    assert await store.list_names() == ["big"]  # no unfinished multipart upload
    assert await read_all(store, stored.location, 5 * MiB - 3, 6) == data[5 * MiB - 3:5 * MiB + 3]
    assert await read_all(store, stored.location) == data
    await store.delete(stored.location)
    assert await store.list_names() == []
    await store.aclose()


async def test_swift_reset_mid_upload_leaves_no_segments(swift_server: SwiftServer) -> None:
    data = random.Random(3).randbytes(4 * MiB)
    with FaultyProxy(swift_server.proxy_port, reset_after=2 * MiB + 5000) as proxy:
        store = swift_store(swift_server, endpoint=proxy.endpoint)
        with pytest.raises(StoreError, match="swift1"):
            await store.write(feed(data), key="img", size=len(data))
        assert proxy.resets == 1
        assert await swift_leftovers(store) == []
        # and the store works again once the network does
        stored = await store.write(feed(data), key="img", size=len(data))
        assert await read_all(store, stored.location) == data
        await store.aclose()


async def test_swift_5xx_mid_upload_leaves_no_segments(swift_server: SwiftServer) -> None:
    data = random.Random(4).randbytes(3 * MiB)
    with FaultyProxy(swift_server.proxy_port, fail_match=b"/00000002 HTTP") as proxy:
        store = swift_store(swift_server, endpoint=proxy.endpoint)
        with pytest.raises(StoreError, match="swift1.*503"):
            await store.write(feed(data), key="img")
        assert proxy.failed == 1
        assert await swift_leftovers(store) == []
        await store.aclose()


async def test_s3_transient_reset_is_retried(s3_server: tuple[str, str, str, int]) -> None:
    endpoint, access, secret, port = s3_server
    data = random.Random(5).randbytes(12 * MiB)
    with FaultyProxy(port, reset_after=7 * MiB) as proxy:
        store = s3_store(proxy.endpoint, access, secret)
        stored = await store.write(feed(data), key="img")
        assert proxy.resets == 1
        assert await store.list_names() == ["img"]
        assert await read_all(store, stored.location) == data
        await store.aclose()


async def test_s3_reset_mid_upload_aborts_the_multipart_upload(
    s3_server: tuple[str, str, str, int],
) -> None:
    endpoint, access, secret, port = s3_server
    data = random.Random(5).randbytes(12 * MiB)
    with FaultyProxy(port, reset_match=b"partNumber=2") as proxy:
        store = s3_store(proxy.endpoint, access, secret)
        with pytest.raises(StoreError, match="s3a"):
            await store.write(feed(data), key="img")
        assert proxy.resets >= 1
        assert await store.list_names() == []  # no object, no multipart upload
        await store.aclose()


async def test_s3_5xx_on_a_part_aborts_the_multipart_upload(
    s3_server: tuple[str, str, str, int],
) -> None:
    endpoint, access, secret, port = s3_server
    data = random.Random(6).randbytes(12 * MiB)
    with FaultyProxy(port, fail_match=b"partNumber=2") as proxy:
        store = s3_store(proxy.endpoint, access, secret)
        with pytest.raises(StoreError, match="s3a"):
            await store.write(feed(data), key="img")
        assert proxy.failed >= 1  # botocore retries a 503 before giving up
        assert await store.list_names() == []
        await store.aclose()


async def test_wrong_credentials_name_the_store(swift_server: SwiftServer) -> None:
    """On Swift's API and its s3api (moto accepts any key)."""
    swift = swift_store(swift_server, key="wrong")
    with pytest.raises(StoreError, match="'swift1'.*credentials"):
        await swift.write(feed(b"x"), key="img")
    await swift.aclose()
    s3 = s3_store(swift_server.endpoint, SWIFT_USER, "wrong-secret")
    with pytest.raises(StoreError, match="'s3a'.*credentials"):
        await s3.write(feed(b"x"), key="img")
    await s3.aclose()


async def test_a_store_that_is_down_is_a_store_error() -> None:
    from tests.servers import free_port

    port = free_port()  # nothing listens there
    swift = SwiftStore("swift1", SwiftCredentials(auth_url=f"http://127.0.0.1:{port}/auth/v1.0",
                                                  user="u", key="k"))
    with pytest.raises(StoreError, match="'swift1'.*unreachable"):
        await swift.stat("swift://swift1/streamd/img")
    await swift.aclose()
    s3 = s3_store(f"http://127.0.0.1:{port}", "a", "b", bucket="bkt-down")
    with pytest.raises(StoreError, match="'s3a'.*unreachable"):
        await s3.stat("s3://s3a/bkt-down/img")
    await s3.aclose()

"""The read-through cache in front of a real OpenStack Swift (``swift_server``).

In a runtime, the Swift store behind a counting wrapper (a real store, its reads counted):
eight concurrent readers of a cold image make one read of Swift; ranges come from the
partial and the complete entry. On a real server: eight concurrent HTTP downloads of a cold
image read its bytes from Swift once (``/metrics``), a range of a cached image reads nothing
from Swift and goes out with sendfile, and a ``kill -9`` in the middle of a fill leaves no
partial entry served after the restart.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.io import BytesSource
from streamd.io.stores import CountingStore
from streamd.registry import ImageRecord
from streamd.service import downloads, transfers
from streamd.service.runtime import Runtime, open_runtime
from streamd.store_config import parse_stores
from streamd.units import MiB
from tests.objectstores import SWIFT_KEY, SWIFT_USER, SwiftServer
from tests.servers import ADMIN_HEADERS as ADMIN
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

CTX = RequestContext(project_id="admin", user_id="admin", roles=frozenset({"admin"}))


def swift_table(swift: SwiftServer, tag: str) -> dict[str, dict[str, object]]:
    return {"swift1": {"type": "swift", "auth_url": swift.auth_url, "user": SWIFT_USER,
                       "key": SWIFT_KEY, "container": f"cache-{tag}",
                       "segment_size": 1 * MiB}}


def swift_toml(swift: SwiftServer, tag: str) -> str:
    # fills of 3 ranged GETs of 1 MiB pieces at once (streamd.io.striped)
    return ('cache_fill_streams = 3\ncache_fill_piece = 1048576\n\n'
            f'[stores.swift1]\ntype = "swift"\nauth_url = "{swift.auth_url}"\n'
            f'user = "{SWIFT_USER}"\nkey = "{SWIFT_KEY}"\ncontainer = "cache-{tag}"\n'
            'segment_size = 1048576\n')


@asynccontextmanager
async def swift_runtime(tmp_path: Path, swift: SwiftServer, **kw: object) -> AsyncIterator[
        tuple[Runtime, CountingStore]]:
    specs = parse_stores(swift_table(swift, uuid.uuid4().hex[:8]), {})
    settings = Settings(data_dir=tmp_path / "data", stores=specs, **kw)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery) as rt:
            counting = CountingStore(rt.stores.stores["swift1"])
            rt.stores.stores["swift1"] = counting
            yield rt, counting
        nursery.cancel_scope.cancel()


async def read_all(rt: Runtime, record: ImageRecord, offset: int, length: int) -> bytes:
    async with downloads.open_download(rt, record, offset, length, zero_copy=False) as d:
        assert d.chunks is not None
        return b"".join([bytes(c) async for c in d.chunks])


@pytest.mark.parametrize(("streams", "reads"), [(1, 1), (3, 6)])
async def test_eight_readers_one_swift_read(tmp_path: Path, swift_server: SwiftServer,
                                            streams: int, reads: int) -> None:
    data = random.Random(1).randbytes(5 * MiB + 3)
    # one GET of the whole, or ranged GETs of 1 MiB pieces, 3 at once
    async with swift_runtime(tmp_path, swift_server, cache_fill_streams=streams,
                             cache_fill_piece=1 * MiB) as (rt, swift):
        image = await rt.db(rt.registry.create, {"name": "s", "owner": "admin",
                                                 "disk_format": "raw",
                                                 "container_format": "bare"})
        record = await transfers.upload(rt, CTX, image.id, BytesSource(data), size=len(data),
                                        store_id="swift1")
        got: list[bytes] = []
        partial: list[bytes] = []

        async def reader() -> None:
            got.append(await read_all(rt, record, 0, len(data)))

        async def ranged() -> None:  # a range while the fill is in flight: behind it
            partial.append(await read_all(rt, record, 1 * MiB, 2 * MiB))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader)
            nursery.start_soon(ranged)
        assert got == [data] * 8 and partial == [data[1 * MiB:3 * MiB]]
        assert rt.cache is not None
        fill = rt.cache.cache.fills.get(record.id)
        if fill is not None:
            await fill.done.wait()
        assert (swift.reads, swift.bytes_read) == (reads, len(data))  # each byte once
        assert record.id in rt.cache.cache.entries
        for offset, length in ((0, 1), (len(data) - 10, 10), (4321, 3 * MiB)):
            assert await read_all(rt, record, offset, length) == data[offset:offset + length]
        assert swift.reads == reads


@pytest.fixture(scope="module")
def swift_node(tmp_path_factory: pytest.TempPathFactory, swift_server: SwiftServer
               ) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("cache-swift")
    config = base / "streamd.toml"
    config.write_text(swift_toml(swift_server, uuid.uuid4().hex[:8]))
    with ServerProcess(data_dir=base / "data", env={"STREAMD_CONFIG": str(config),
                                                        "STREAMD_HTTP_SERVER": "anycorn"}) as srv:
        yield srv


def metric(srv: ServerProcess, name: str) -> float:
    text = httpx.get(srv.url + "/metrics", headers=ADMIN).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def new_image(srv: ServerProcess, data: bytes) -> str:
    image_id = httpx.post(srv.url + "/v2/images", headers=ADMIN,
                          json={"disk_format": "raw", "container_format": "bare"}).json()["id"]
    r = httpx.put(srv.url + f"/v2/images/{image_id}/file", content=data, timeout=60,
                  headers={**ADMIN, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    return image_id


def test_eight_http_downloads_read_swift_once(swift_node: ServerProcess) -> None:
    data = random.Random(2).randbytes(6 * MiB + 11)
    image_id = new_image(swift_node, data)
    before = metric(swift_node, "streamd_cache_store_read_bytes_total")
    got: list[bytes] = []

    def download() -> None:
        got.append(httpx.get(swift_node.url + f"/v2/images/{image_id}/file", headers=ADMIN,
                             timeout=60).content)

    threads = [threading.Thread(target=download) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [data] * 8
    assert metric(swift_node, "streamd_cache_store_read_bytes_total") - before == len(data)

    # a 1 MiB range of the cached image: from the cache (sendfile), nothing from Swift
    deadline = time.monotonic() + 30
    while image_id not in str(httpx.get(swift_node.url + "/v2/cache", headers=ADMIN).json()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = metric(swift_node, "streamd_cache_store_read_bytes_total")
    r = httpx.get(swift_node.url + f"/v2/images/{image_id}/file",
                  headers={**ADMIN, "Range": "bytes=1048576-2097151"})
    assert r.status_code == 206 and r.content == data[1 * MiB:2 * MiB]
    assert metric(swift_node, "streamd_cache_store_read_bytes_total") == before
    assert re.search(rf"DOWNLOAD image={image_id} offset=1048576 .* via=sendfile",
                     swift_node.log())
    httpx.delete(swift_node.url + f"/v2/images/{image_id}", headers=ADMIN)
    cached = httpx.get(swift_node.url + "/v2/cache", headers=ADMIN).json()["cached_images"]
    assert image_id not in [e["image_id"] for e in cached]


def test_kill_mid_fill_leaves_no_partial_entry(
    tmp_path: Path, swift_server: SwiftServer
) -> None:
    config = tmp_path / "streamd.toml"
    # slow Swift down so that the fill is still running when the server is killed
    config.write_text(swift_toml(swift_server, uuid.uuid4().hex[:8])
                      .replace("[stores.swift1]", "store_throttle_mib_s = 2.0\n\n"
                               "[stores.swift1]"))
    data = random.Random(3).randbytes(8 * MiB)
    env = {"STREAMD_CONFIG": str(config)}
    cache_dir = tmp_path / "data" / "cache"
    srv = ServerProcess(data_dir=tmp_path / "data", env=env).start()
    try:
        image_id = new_image(srv, data)

        def download() -> None:
            try:
                with httpx.stream("GET", srv.url + f"/v2/images/{image_id}/file",
                                  headers=ADMIN, timeout=60) as r:
                    for _ in r.iter_bytes():
                        pass
            except httpx.HTTPError:
                pass  # the server is killed under it

        reader = threading.Thread(target=download)
        reader.start()
        deadline = time.monotonic() + 30
        while not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")
                   and p.stat().st_size > 0]:
            assert time.monotonic() < deadline, "no fill started"
            time.sleep(0.05)
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        reader.join()
        assert [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]  # left behind
    finally:
        srv.stop()
    again = ServerProcess(data_dir=tmp_path / "data", env=env).start()
    try:
        assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]
        assert httpx.get(again.url + "/v2/cache", headers=ADMIN).json() == {
            "cached_images": [], "queued_images": []}
        r = httpx.get(again.url + f"/v2/images/{image_id}/file", headers=ADMIN, timeout=60)
        assert r.content == data
        assert "removed 1 file(s) that were no verified entry" in again.log()
    finally:
        again.stop()

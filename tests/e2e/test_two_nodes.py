"""Two API nodes, one cloud: two ``streamd serve`` processes on two ports sharing one
PostgreSQL registry and one Swift store.

An image uploaded through node A downloads through node B; data staged on A is imported
through B (B sends the import to A, where the stage is); deleting an image through B stops
the import A is running; and when A is killed (SIGKILL) in the middle of an upload, B leaves
the upload alone while A's lease is live and repairs it once the lease has run out: the
image back to ``queued``, no segment of it left in Swift.

Leases last 2 s here (renewed every 2/3 s) and repairs run every 0.3 s, so that real time
stays short; the same behaviour on an injected clock is in tests/service/test_node_leases.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.data_client import MEMBER, RawUpload, create_image, file_url, show, upload
from tests.import_client import (
    Route,
    WebServer,
    stage,
    start_import,
    wait_for_import,
    web_server,
)
from tests.objectstores import SWIFT_KEY, SWIFT_USER, SwiftServer
from tests.registry.conftest import migrated_database
from tests.servers import ADMIN_HEADERS, ServerProcess

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
LEASE_TTL = 2.0  # seconds
REPAIR_INTERVAL = 0.3  # seconds


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database of this module's own, migrated (skipped if PostgreSQL is not
    there, as the registry tests are)."""
    with migrated_database("postgresql", tmp_path_factory.mktemp("pg")) as engine:
        yield engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def container() -> str:
    return f"two-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, database_url: str, swift_server: SwiftServer,
         container: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes A and B: one database, one Swift store (the default), a data dir each; started
    once for the module (every test works on images of its own)."""
    tmp_path = tmp_path_factory.mktemp("two-nodes")
    config = tmp_path / "streamd.toml"
    config.write_text(f"""
default_store = "swift1"
lease_ttl = {LEASE_TTL}
repair_interval = {REPAIR_INTERVAL}
web_download_private_hosts = ["127.0.0.1"]
web_download_allowed_ports = []

[stores.swift1]
type = "swift"
auth_url = "{swift_server.auth_url}"
user = "{SWIFT_USER}"
container = "{container}"
segment_size = {MiB}
""")
    env = {"STREAMD_CONFIG": str(config), "STREAMD_STORES__SWIFT1__KEY": SWIFT_KEY}
    a, b = (ServerProcess(data_dir=tmp_path / name, env=env,
                          args=("--database-url", database_url)) for name in ("a", "b"))
    with a, b:
        yield a, b


@pytest.fixture
def nodes(pair: tuple[ServerProcess, ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    """The module's two nodes, a node that an earlier test killed started again."""
    for node in pair:
        if node.proc is not None and node.proc.poll() is not None:
            node.stop()
            node.start()
    return pair


@pytest.fixture
def web() -> Iterator[WebServer]:
    with web_server() as server:
        yield server


def segments(swift: SwiftServer, container: str, image_id: str) -> list[str]:
    """The names of the Swift segments written for ``image_id``."""
    storage_url, token = swift.token()
    r = httpx.get(f"{storage_url}/{container}_segments",
                  params={"format": "json", "prefix": f"{image_id}/"},
                  headers={"X-Auth-Token": token})
    return [] if r.status_code == 404 else [o["name"] for o in r.json()]


def lease_expiry(database_url: str, key: str) -> dt.datetime | None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT expires_at FROM leases WHERE key = :key"),
                                {"key": key}).scalar()
    finally:
        engine.dispose()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_upload_through_a_download_through_b(nodes: tuple[ServerProcess, ServerProcess]
                                             ) -> None:
    a, b = nodes
    data = random.Random(1).randbytes(3 * MiB + 4321)  # a large object: 4 segments
    image_id = create_image(a)
    assert upload(a, image_id, data).status_code == 204
    got = httpx.get(file_url(b, image_id), headers=MEMBER, timeout=30)
    assert got.status_code == 200 and got.content == data
    image = show(b, image_id)
    assert image["stores"] == "swift1"
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert "os_glance_stage_host" not in image


def test_stage_on_a_import_on_b(nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = nodes
    data = random.Random(2).randbytes(2 * MiB + 99)
    image_id = create_image(b)
    assert stage(a, image_id, data).status_code == 204
    # B has no stage of it: it sends the import, with the caller's identity, to A
    r = start_import(b, image_id, {"name": "glance-direct"})
    assert r.status_code == 202, r.text
    image = wait_for_import(b, image_id)
    assert image["status"] == "active" and image["stores"] == "swift1"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert httpx.get(file_url(b, image_id), headers=MEMBER, timeout=30).content == data
    assert f"IMPORT image={image_id} staged on {a.url}" in b.log()
    assert f"IMPORTED image={image_id}" in a.log()
    assert f"IMPORTED image={image_id}" not in b.log()
    # a resume of a stage sent to the wrong node says where the stage is
    other = create_image(b)
    assert stage(a, other, b"abc", **{"Content-Range": "bytes 0-2/6"}).status_code == 204
    wrong = stage(b, other, b"def", **{"Content-Range": "bytes 3-5/6"})
    assert wrong.status_code == 409 and a.url in wrong.json()["error"]["message"]


def test_deleting_on_b_stops_an_import_running_on_a(
        nodes: tuple[ServerProcess, ServerProcess], web: WebServer,
        swift_server: SwiftServer, container: str) -> None:
    a, b = nodes
    size = 64 * MiB
    web.routes["/slow"] = route = Route(size=size, delay=0.05)  # ~5 MiB/s: ~13 s in all
    image_id = create_image(a)
    assert start_import(a, image_id, {"name": "web-download",
                                      "uri": web.url("/slow")}).status_code == 202
    wait_until(lambda: route.sent > 2 * MiB and bool(segments(swift_server, container,
                                                              image_id)))
    assert httpx.delete(f"{b.url}/v2/images/{image_id}", headers=MEMBER).status_code == 204
    # A's next renewal (every 2/3 s) finds the image gone and cancels the job
    lost = f"LEASE key=import:{image_id} node="
    wait_until(lambda: any(lost in line and "lost: the image is gone" in line
                           for line in a.log().splitlines()), timeout=5)
    stopped_at = route.sent
    time.sleep(1.0)
    assert route.sent < size and route.sent - stopped_at <= 4 * MiB  # socket buffers only
    wait_until(lambda: segments(swift_server, container, image_id) == [], timeout=10)
    assert httpx.get(f"{a.url}/v2/images/{image_id}", headers=MEMBER).status_code == 404


def test_b_repairs_a_killed_upload_only_once_its_lease_ran_out(
        nodes: tuple[ServerProcess, ServerProcess], database_url: str,
        swift_server: SwiftServer, container: str) -> None:
    a, b = nodes
    image_id = create_image(a)
    with RawUpload(a, image_id, content_length=16 * MiB) as raw:
        raw.send(random.Random(3).randbytes(3 * MiB + 512 * 1024))
        wait_until(lambda: show(b, image_id)["status"] == "saving")
        wait_until(lambda: len(segments(swift_server, container, image_id)) >= 3)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
    left = segments(swift_server, container, image_id)
    expires = lease_expiry(database_url, f"upload:{image_id}")
    assert expires is not None and expires > utcnow()
    # while the lease is live, B (repairing every 0.3 s) leaves the upload alone
    looks = 0
    while utcnow() < expires - dt.timedelta(seconds=0.3):
        assert show(b, image_id)["status"] == "saving"
        looks += 1
        time.sleep(0.05)
    assert looks > 0 and segments(swift_server, container, image_id) == left
    # once it has run out, B takes it over: queued again, the segments gone
    wait_until(lambda: show(b, image_id)["status"] == "queued", timeout=10)
    assert segments(swift_server, container, image_id) == []
    assert lease_expiry(database_url, f"upload:{image_id}") is None
    assert f"REPAIR image={image_id}: removed {len(left)} piece(s)" in b.log()
    # and the upload can be done again, through either node
    data = random.Random(4).randbytes(MiB + 7)
    assert upload(b, image_id, data).status_code == 204
    assert httpx.get(file_url(b, image_id), headers=ADMIN_HEADERS).content == data

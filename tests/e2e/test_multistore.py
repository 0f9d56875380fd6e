"""Several stores in one server: a file store, Swift, S3 through Swift's s3api, S3 on moto.

A real streamd with four ``[stores.<id>]`` tables, driven by glanceclient, openstacksdk and
httpx: ``/v2/info/stores`` as Glance answers it, uploads to the store a request names
(``X-Image-Meta-Store``; glanceclient's ``backend=``), downloads checked against the
checksums, deletes that leave nothing in the object store.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import openstack
import pytest

from tests.data_client import create_image, error_of, show, upload, wait_for_status
from tests.objectstores import SWIFT_KEY, SWIFT_USER, MotoServer, SwiftServer
from tests.servers import ADMIN_HEADERS as ADMIN
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

MEMBER = {"X-Project-Id": "p-multi", "X-User-Id": "u1", "X-Roles": "member,reader"}


def stores_toml(swift: SwiftServer, moto: MotoServer, tag: str) -> str:
    return f"""
default_store = "local"

[stores.local]
type = "file"
description = "local disk"

[stores.swift1]
type = "swift"
description = "Swift"
auth_url = "{swift.auth_url}"
user = "{SWIFT_USER}"
container = "images-{tag}"
segment_size = 1048576

[stores.s3swift]
type = "s3"
description = "S3 through Swift's s3api"
endpoint = "{swift.endpoint}"
bucket = "images-{tag}"
access_key = "{SWIFT_USER}"

[stores.moto]
type = "s3"
endpoint = "{moto.endpoint}"
bucket = "images-{tag}"
access_key = "testing"
secret_key = "testing"
"""


@pytest.fixture(scope="module")
def multi(
    tmp_path_factory: pytest.TempPathFactory, swift_server: SwiftServer, moto_server: MotoServer
) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("multistore")
    tag = uuid.uuid4().hex[:8]
    config = base / "streamd.toml"
    config.write_text(stores_toml(swift_server, moto_server, tag))
    env = {"STREAMD_CONFIG": str(config),
           # secrets from the environment, as an operator would keep them
           "STREAMD_STORES__SWIFT1__KEY": SWIFT_KEY,
           "STREAMD_STORES__S3SWIFT__SECRET_KEY": SWIFT_KEY}
    with ServerProcess(data_dir=base / "data", env=env) as server:
        yield server


def test_info_stores_as_glance(multi: ServerProcess) -> None:
    stores = httpx.get(multi.url + "/v2/info/stores", headers=MEMBER).json()["stores"]
    assert stores == [
        {"id": "local", "description": "local disk", "default": "true"},
        {"id": "swift1", "description": "Swift"},
        {"id": "s3swift", "description": "S3 through Swift's s3api"},
        {"id": "moto", "description": ""},
    ]
    r = httpx.get(multi.url + "/v2/info/stores/detail", headers=MEMBER)
    assert r.status_code == 403 and error_of(r)["message"]
    detail = httpx.get(multi.url + "/v2/info/stores/detail", headers=ADMIN).json()["stores"]
    by_id = {s["id"]: s for s in detail}
    assert by_id["swift1"]["type"] == "swift" and by_id["moto"]["type"] == "s3"
    assert by_id["swift1"]["properties"]["user"] == SWIFT_USER
    for store in detail:  # no secret ever leaves the server
        assert not {"key", "secret_key", "token"} & set(store["properties"])
        assert store["weight"] == 0


def test_create_announces_the_stores(multi: ServerProcess) -> None:
    r = httpx.post(multi.url + "/v2/images", headers=ADMIN,
                   json={"name": "x", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201
    assert r.headers["openstack-image-store-ids"] == "local,swift1,s3swift,moto"
    httpx.delete(multi.url + f"/v2/images/{r.json()['id']}", headers=ADMIN)


def test_unknown_store_is_400_and_the_image_stays_queued(multi: ServerProcess) -> None:
    image = httpx.post(multi.url + "/v2/images", headers=ADMIN,
                       json={"disk_format": "raw", "container_format": "bare"}).json()
    r = httpx.put(multi.url + f"/v2/images/{image['id']}/file", content=b"abc",
                  headers={**ADMIN, "Content-Type": "application/octet-stream",
                           "X-Image-Meta-Store": "nowhere"})
    assert r.status_code == 400 and "nowhere" in error_of(r)["message"]
    shown = httpx.get(multi.url + f"/v2/images/{image['id']}", headers=ADMIN).json()
    assert shown["status"] == "queued" and "stores" not in shown
    httpx.delete(multi.url + f"/v2/images/{image['id']}", headers=ADMIN)


@pytest.mark.parametrize("store", ["local", "swift1", "s3swift", "moto"])
def test_glanceclient_round_trip_per_store(multi: ServerProcess, store: str) -> None:
    glance = glanceclient.Client("2", endpoint=multi.url, token="x")
    data = random.Random(store).randbytes(3 * 1024 * 1024 + 17)
    image = glance.images.create(name=f"gc-{store}", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(data), backend=store)  # chunked, size unknown
    shown = glance.images.get(image.id)
    assert shown.status == "active" and shown.stores == store
    assert shown.checksum == hashlib.md5(data).hexdigest()
    got = b"".join(glance.images.data(image.id))  # glanceclient checks the md5 itself
    assert got == data
    glance.images.delete(image.id)


@pytest.mark.parametrize("store", ["swift1", "s3swift", "moto"])
def test_openstacksdk_round_trip_per_store(
    multi: ServerProcess, store: str, tmp_path: Path
) -> None:
    conn = openstack.connection.Connection(
        auth_type="none", image_endpoint_override=multi.url + "/v2")
    data = random.Random(store + "sdk").randbytes(2 * 1024 * 1024 + 5)
    # the sdk's import path (stage, then glance-direct into the store it names)
    image = conn.image.create_image(name=f"sdk-{store}", disk_format="raw",
                                    container_format="bare", data=data, allow_duplicates=True,
                                    use_import=True, stores=[store], wait=True, timeout=60)
    image_id = image.id
    shown = wait_for_status(multi, image_id, "active")
    assert shown["stores"] == store  # the sdk's Image has no `stores`
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    out = tmp_path / "out.img"
    conn.image.download_image(image_id, output=str(out), stream=True)  # md5 checked by sdk
    assert out.read_bytes() == data
    conn.image.delete_image(image_id)
    assert httpx.get(multi.url + f"/v2/images/{image_id}", headers=ADMIN).status_code == 404


async def test_deleting_an_image_leaves_nothing_in_the_object_stores(
    multi: ServerProcess, swift_server: SwiftServer, moto_server: MotoServer
) -> None:
    from streamd.io.stores.s3 import S3Settings, S3Store
    from streamd.io.stores.swift import SwiftCredentials, SwiftStore
    from tests.io.conftest import swift_leftovers

    config = (multi.data_dir.parent / "streamd.toml").read_text()
    tag = config.split('container = "images-')[1][:8]
    swift = SwiftStore("swift1", SwiftCredentials(auth_url=swift_server.auth_url,
                                                  user=SWIFT_USER, key=SWIFT_KEY),
                       container=f"images-{tag}")
    moto = S3Store("moto", S3Settings(bucket=f"images-{tag}", endpoint_url=moto_server.endpoint,
                                      access_key="testing", secret_key="testing"))
    try:
        for store in ("swift1", "moto"):
            data = random.Random(7).randbytes(3 * 1024 * 1024)  # past one Swift segment
            image = _upload_to(multi, store, data)
            assert image["stores"] == store
            before = await (swift_leftovers(swift) if store == "swift1" else moto.list_names())
            assert before == [image["id"]]
            async with httpx.AsyncClient() as client:
                r = await client.delete(multi.url + f"/v2/images/{image['id']}", headers=ADMIN)
            assert r.status_code == 204
            after = await (swift_leftovers(swift) if store == "swift1" else moto.list_names())
            assert after == []
    finally:
        await swift.aclose()
        await moto.aclose()


def _upload_to(server: ServerProcess, store: str, data: bytes) -> dict[str, Any]:
    image_id = create_image(server, ADMIN)
    r = upload(server, image_id, data, {**ADMIN, "X-Image-Meta-Store": store})
    assert r.status_code == 204, r.text
    return show(server, image_id)


def test_a_store_that_is_down_fails_only_its_own_requests(
    make_server: Any, tmp_path: Path
) -> None:
    from tests.servers import free_port

    dead = free_port()  # nothing listens there
    config = tmp_path / "streamd.toml"
    config.write_text(f"""
default_store = "local"
[stores.local]
type = "file"
[stores.down]
type = "swift"
auth_url = "http://127.0.0.1:{dead}/auth/v1.0"
user = "test:tester"
key = "testing"
[stores.s3down]
type = "s3"
endpoint = "http://127.0.0.1:{dead}"
bucket = "images"
access_key = "a"
secret_key = "b"
""")
    server = make_server(env={"STREAMD_CONFIG": str(config)})  # starts: stores are not dialled
    for store in ("down", "s3down"):
        image_id = create_image(server, ADMIN)
        r = upload(server, image_id, b"x" * 1000, {**ADMIN, "X-Image-Meta-Store": store})
        assert r.status_code == 503, r.text
        assert f"'{store}'" in error_of(r)["message"] and "unreachable" in error_of(r)["message"]
        assert show(server, image_id)["status"] == "queued"
    image_id = create_image(server, ADMIN)
    assert upload(server, image_id, b"y" * 1000, ADMIN).status_code == 204
    assert show(server, image_id)["stores"] == "local"


@pytest.mark.parametrize("fault", ["swift-reset", "s3-5xx"])
async def test_a_store_failing_mid_upload_leaves_the_image_queued_and_nothing_stored(
    make_server: Any, tmp_path: Path, swift_server: SwiftServer, moto_server: MotoServer,
    fault: str,
) -> None:
    """The object store resets (Swift) or answers 503 (S3) in the middle of an upload: the
    client gets a JSON 503 naming the store, the image is queued, no segment or multipart
    upload is left, and the same upload then succeeds once the store is healthy."""
    from streamd.io.stores.s3 import S3Settings, S3Store
    from streamd.io.stores.swift import SwiftCredentials, SwiftStore
    from tests.faulty_proxy import FaultyProxy
    from tests.io.conftest import swift_leftovers

    tag = uuid.uuid4().hex[:8]
    if fault == "swift-reset":
        proxy = FaultyProxy(swift_server.proxy_port, reset_match=b"/00000001 HTTP")
        table = (f'type = "swift"\nauth_url = "{proxy.endpoint}/auth/v1.0"\n'
                 f'user = "{SWIFT_USER}"\nkey = "{SWIFT_KEY}"\ncontainer = "f-{tag}"\n'
                 "segment_size = 1048576\n")
        store = SwiftStore("x", SwiftCredentials(auth_url=swift_server.auth_url,
                                                 user=SWIFT_USER, key=SWIFT_KEY),
                           container=f"f-{tag}")
    else:
        proxy = FaultyProxy(moto_server.port, fail_match=b"partNumber=2")
        table = (f'type = "s3"\nendpoint = "{proxy.endpoint}"\nbucket = "f-{tag}"\n'
                 'access_key = "testing"\nsecret_key = "testing"\npart_size = 5242880\n')
        store = S3Store("x", S3Settings(bucket=f"f-{tag}", endpoint_url=moto_server.endpoint,
                                        access_key="testing", secret_key="testing"))
    config = tmp_path / "streamd.toml"
    config.write_text(f'default_store = "obj"\n[stores.obj]\n{table}')
    data = random.Random(fault).randbytes(11 * 1024 * 1024)
    try:
        with proxy:
            server = make_server(env={"STREAMD_CONFIG": str(config)})
            image_id = create_image(server, ADMIN)
            async with httpx.AsyncClient(timeout=60) as client:
                r = await client.put(f"{server.url}/v2/images/{image_id}/file", content=data,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
            assert r.status_code == 503, r.text
            assert "'obj'" in error_of(r)["message"]
            assert show(server, image_id)["status"] == "queued"
            leftovers = await (swift_leftovers(store) if fault == "swift-reset"
                               else store.list_names())
            assert leftovers == []
            proxy.reset_match = proxy.fail_match = None  # the store is healthy again
            async with httpx.AsyncClient(timeout=60) as client:
                r = await client.put(f"{server.url}/v2/images/{image_id}/file", content=data,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
                assert r.status_code == 204, r.text
                got = await client.get(f"{server.url}/v2/images/{image_id}/file", headers=ADMIN)
            assert got.content == data
    finally:
        await store.aclose()

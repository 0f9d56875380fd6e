"""copy-image and DELETE /v2/stores/{store_id}/{image_id} on a real server with real stores.

The module's server has two file stores, a real Swift and S3 on moto's server. A copy is
checked by reading it alone: the other copies are deleted from their stores first (with
glanceclient's ``delete_from_store``), then the download (md5 checked by glanceclient)
can only come from the copy. Other servers: one with an S3 store whose endpoint is a closed
port (partial failures), one with slow stores (an image deleted mid-copy).
"""

from __future__ import annotations

import hashlib
import io
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc as glance_exc

from tests.data_client import create_image, error_of, file_url, registry_row, show, upload
from tests.import_client import Route, image_tasks, start_import, wait_for_import, web_server
from tests.objectstores import SWIFT_KEY, SWIFT_USER, MotoServer, SwiftServer
from tests.servers import ADMIN_HEADERS as ADMIN
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
MEMBER = {"X-Project-Id": "p-copy", "X-User-Id": "u1", "X-Roles": "member,reader"}
COPY = {"name": "copy-image"}


def stores_toml(base: Path, swift: SwiftServer, moto: MotoServer, tag: str) -> str:
    return f"""
default_store = "local"

[stores.local]
type = "file"

[stores.file2]
type = "file"
path = "{base / 'file2'}"

[stores.swift1]
type = "swift"
auth_url = "{swift.auth_url}"
user = "{SWIFT_USER}"
container = "copies-{tag}"
segment_size = 1048576

[stores.moto]
type = "s3"
endpoint = "{moto.endpoint}"
bucket = "copies-{tag}"
access_key = "testing"
secret_key = "testing"
"""


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, swift_server: SwiftServer, moto_server: MotoServer
) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("copy-image")
    config = base / "streamd.toml"
    config.write_text(stores_toml(base, swift_server, moto_server, uuid.uuid4().hex[:8]))
    env = {"STREAMD_CONFIG": str(config), "STREAMD_STORES__SWIFT1__KEY": SWIFT_KEY,
           # web-download from the test's web server on loopback
           "STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
           "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": ""}
    with ServerProcess(data_dir=base / "data", env=env) as server:
        yield server


@pytest.fixture
def glance(srv: ServerProcess) -> Iterator[glanceclient.v2.client.Client]:
    client = glanceclient.Client("2", endpoint=srv.url, token="x")
    client.http_client.session.headers.update(ADMIN)
    yield client
    client.http_client.session.close()


def active_in(server: ServerProcess, store: str, data: bytes) -> str:
    image_id = create_image(server, ADMIN)
    r = upload(server, image_id, data, {**ADMIN, "X-Image-Meta-Store": store})
    assert r.status_code == 204, r.text
    return image_id


def copy_image(server: ServerProcess, image_id: str, **body: Any) -> httpx.Response:
    return start_import(server, image_id, COPY, ADMIN, **body)


def copied(server: ServerProcess, image_id: str) -> dict[str, Any]:
    image = wait_for_import(server, image_id)
    assert image["status"] == "active" and image["os_glance_importing_to_stores"] == ""
    return image


def file2_objects(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in (server.data_dir.parent / "file2").iterdir())


def test_copy_file_to_swift_then_swift_to_s3_verified_by_download(
    srv: ServerProcess, glance: glanceclient.v2.client.Client
) -> None:
    data = random.Random(1).randbytes(3 * MiB + 333)  # several Swift segments, S3 parts
    image_id = active_in(srv, "local", data)
    before = show(srv, image_id)

    glance.images.image_import(image_id, method="copy-image", stores=["swift1"],
                               allow_failure=False)
    image = copied(srv, image_id)
    assert image["stores"] == "local,swift1"  # the source first, as Glance
    assert image["os_glance_failed_import"] == "" and "os_glance_import_task" not in image
    for name in ("checksum", "os_hash_algo", "os_hash_value", "size"):
        assert image[name] == before[name]
    (task,) = image_tasks(srv, image_id)
    assert task["status"] == "success"
    assert task["input"]["backend"] == ["swift1"]

    glance.images.delete_from_store("local", image_id)  # now only Swift has it
    assert show(srv, image_id)["stores"] == "swift1"
    assert b"".join(glance.images.data(image_id)) == data  # md5 checked by glanceclient

    glance.images.image_import(image_id, method="copy-image", stores=["moto"])
    assert copied(srv, image_id)["stores"] == "swift1,moto"
    glance.images.delete_from_store("swift1", image_id)  # now only S3 has it
    assert show(srv, image_id)["stores"] == "moto"
    got = httpx.get(file_url(srv, image_id), headers=ADMIN)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-md5"]
    assert hashlib.sha512(got.content).hexdigest() == before["os_hash_value"]
    glance.images.delete(image_id)


def test_all_stores_and_its_no_op(srv: ServerProcess) -> None:
    data = random.Random(2).randbytes(MiB + 7)
    image_id = active_in(srv, "file2", data)
    r = copy_image(srv, image_id, all_stores=True)
    assert r.status_code == 202 and r.content == b""
    assert copied(srv, image_id)["stores"] == "file2,local,swift1,moto"
    # every store has it: 202, nothing to do, no new task (as Glance)
    r = copy_image(srv, image_id, all_stores=True)
    assert r.status_code == 202
    assert len(image_tasks(srv, image_id)) == 1
    r = copy_image(srv, image_id, stores=["moto"])
    assert r.status_code == 400
    assert error_of(r)["message"] == "Image is already present at store 'moto'"
    for store in ("file2", "local", "swift1"):
        assert httpx.delete(f"{srv.url}/v2/stores/{store}/{image_id}",
                            headers=ADMIN).status_code == 204
    got = httpx.get(file_url(srv, image_id), headers=ADMIN)
    assert got.status_code == 200 and got.content == data
    httpx.delete(f"{srv.url}/v2/images/{image_id}", headers=ADMIN)


def test_glance_direct_and_web_download_into_several_stores(
    srv: ServerProcess, glance: glanceclient.v2.client.Client
) -> None:
    data = random.Random(7).randbytes(2 * MiB + 3)
    image = glance.images.create(name="gd-multi", disk_format="raw", container_format="bare")
    glance.images.stage(image["id"], io.BytesIO(data))
    glance.images.image_import(image["id"], method="glance-direct",
                               stores=["local", "file2", "moto"], allow_failure=False)
    done = copied(srv, image["id"])
    assert done["stores"] == "local,file2,moto" and done["os_glance_failed_import"] == ""
    assert done["checksum"] == hashlib.md5(data).hexdigest()
    (task,) = image_tasks(srv, image["id"])
    assert task["status"] == "success" and task["input"]["backend"] == ["local", "file2", "moto"]
    for store in ("local", "file2"):  # leave moto's copy alone, and read it
        glance.images.delete_from_store(store, image["id"])
    assert b"".join(glance.images.data(image["id"])) == data
    glance.images.delete(image["id"])

    with web_server() as web:
        web.routes["/multi.raw"] = Route(data=data)
        image = glance.images.create(name="wd-multi", disk_format="raw", container_format="bare")
        glance.images.image_import(image["id"], method="web-download",
                                   uri=web.url("/multi.raw"), stores=["swift1", "local"])
        assert copied(srv, image["id"])["stores"] == "swift1,local"
    glance.images.delete_from_store("swift1", image["id"])
    assert b"".join(glance.images.data(image["id"])) == data
    glance.images.delete(image["id"])


def test_copy_image_refusals(srv: ServerProcess) -> None:
    owned = create_image(srv, MEMBER)
    assert upload(srv, owned, b"m" * 1000, MEMBER).status_code == 204
    r = start_import(srv, owned, COPY, MEMBER, stores=["file2"])
    assert r.status_code == 403  # Glance's copy_image: admins only
    assert error_of(r)["message"] == "You are not authorized to complete copy_image action."
    r = copy_image(srv, owned, stores=["nowhere"])
    assert r.status_code == 409 and "nowhere" in error_of(r)["message"]
    queued = create_image(srv, ADMIN)
    r = copy_image(srv, queued, stores=["file2"])
    assert r.status_code == 409
    assert error_of(r)["message"] == "Only images with status active can be targeted for copying"


def test_delete_from_store_answers_as_glance(srv: ServerProcess) -> None:
    data = random.Random(3).randbytes(200_000)
    image_id = active_in(srv, "local", data)
    url = f"{srv.url}/v2/stores/%s/{image_id}"

    r = httpx.delete(url % "nope", headers=ADMIN)
    assert r.status_code == 409
    assert error_of(r)["message"] == "The selected store nope is not available on this node."
    for store in ("local", "file2"):  # the only copy: 403 whichever store is named
        r = httpx.delete(url % store, headers=ADMIN)
        assert r.status_code == 403
        assert error_of(r)["message"] == ("Cannot delete image data from the only store "
                                          "containing it. Consider deleting the image instead.")
    assert copy_image(srv, image_id, stores=["file2"]).status_code == 202
    assert copied(srv, image_id)["stores"] == "local,file2"
    r = httpx.delete(url % "swift1", headers=ADMIN)
    assert r.status_code == 404 and "is not stored in store swift1" in error_of(r)["message"]
    r = httpx.delete(url % "file2", headers=MEMBER)  # not its image: as if there were none
    assert r.status_code == 404
    assert httpx.post(f"{srv.url}/v2/images/{image_id}/actions/deactivate",
                      headers=ADMIN).status_code == 204
    r = httpx.delete(url % "file2", headers=ADMIN)
    assert r.status_code == 409 and "not 'active'" in error_of(r)["message"]
    assert httpx.post(f"{srv.url}/v2/images/{image_id}/actions/reactivate",
                      headers=ADMIN).status_code == 204

    r = httpx.delete(url % "local", headers=ADMIN)
    assert r.status_code == 204 and r.content == b""
    assert show(srv, image_id)["stores"] == "file2"
    got = httpx.get(file_url(srv, image_id), headers=ADMIN)
    assert got.status_code == 200 and got.content == data  # from the other copy
    assert not (srv.data_dir / "images" / image_id).exists()  # the local object went too
    httpx.delete(f"{srv.url}/v2/images/{image_id}", headers=ADMIN)
    assert file2_objects(srv) == []


def test_owners_may_not_delete_a_copy(srv: ServerProcess) -> None:
    glance = glanceclient.Client("2", endpoint=srv.url, token="x")
    glance.http_client.session.headers.update(MEMBER)
    image_id = create_image(srv, MEMBER)
    assert upload(srv, image_id, b"o" * 5000, MEMBER).status_code == 204
    assert copy_image(srv, image_id, stores=["file2"]).status_code == 202
    copied(srv, image_id)
    with pytest.raises(glance_exc.HTTPForbidden, match="delete_image_location"):
        glance.images.delete_from_store("file2", image_id)  # Glance: admins only
    glance.images.delete(image_id)  # the owner deletes the image, every copy with it
    assert file2_objects(srv) == []


async def test_download_fails_over_when_a_copy_vanishes_from_swift(
    srv: ServerProcess, swift_server: SwiftServer
) -> None:
    from streamd.io import ObjectNotFound
    from streamd.io.stores.swift import SwiftCredentials, SwiftStore

    data = random.Random(4).randbytes(2 * MiB + 99)
    image_id = active_in(srv, "swift1", data)
    assert copy_image(srv, image_id, stores=["local"]).status_code == 202
    assert copied(srv, image_id)["stores"] == "swift1,local"
    row = registry_row(srv.data_dir, image_id)
    assert row is not None and row["store"] == "swift1"
    container = row["location"].split("/")[3]
    swift = SwiftStore("swift1", SwiftCredentials(auth_url=swift_server.auth_url,
                                                  user=SWIFT_USER, key=SWIFT_KEY),
                       container=container)
    try:
        await swift.delete(row["location"])  # behind streamd's back
        with pytest.raises(ObjectNotFound):
            await swift.stat(row["location"])
    finally:
        await swift.aclose()
    async with httpx.AsyncClient() as client:
        got = await client.get(file_url(srv, image_id), headers=ADMIN)
        assert got.status_code == 200 and got.content == data
        assert (await client.delete(f"{srv.url}/v2/images/{image_id}",
                                    headers=ADMIN)).status_code == 204


# -- a store that is down ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("copy-down")
    config = base / "streamd.toml"
    config.write_text(f"""
default_store = "local"
[stores.local]
type = "file"
[stores.file2]
type = "file"
path = "{base / 'file2'}"
[stores.down]
type = "s3"
endpoint = "http://127.0.0.1:{free_port()}"
bucket = "images"
access_key = "a"
secret_key = "b"
""")
    with ServerProcess(data_dir=base / "data", env={"STREAMD_CONFIG": str(config)}) as server:
        yield server


@pytest.mark.parametrize("must_succeed", [False, True])
def test_a_copy_to_a_store_that_is_down(with_down: ServerProcess, must_succeed: bool) -> None:
    data = random.Random(5).randbytes(MiB + 1)
    image_id = active_in(with_down, "local", data)
    r = copy_image(with_down, image_id, stores=["file2", "down"],
                   all_stores_must_succeed=must_succeed)
    assert r.status_code == 202
    image = copied(with_down, image_id)
    assert image["os_glance_failed_import"] == "down"
    (task,) = image_tasks(with_down, image_id)
    assert "Copy to store 'down' failed" in task["message"]
    if must_succeed:  # all or nothing: the copy to file2 is removed again
        assert task["status"] == "failure"
        assert image["stores"] == "local" and file2_objects(with_down) == []
    else:
        assert task["status"] == "success"
        assert image["stores"] == "local,file2" and file2_objects(with_down) == [image_id]
    got = httpx.get(file_url(with_down, image_id), headers=ADMIN)
    assert got.status_code == 200 and got.content == data
    # a later copy to the store that failed clears it from os_glance_failed_import
    if must_succeed:
        assert copy_image(with_down, image_id, stores=["file2"]).status_code == 202
        image = copied(with_down, image_id)
        assert image["stores"] == "local,file2" and image["os_glance_failed_import"] == "down"
    httpx.delete(f"{with_down.url}/v2/images/{image_id}", headers=ADMIN)
    assert file2_objects(with_down) == []


# -- slow stores: an image deleted while it is copied ------------------------------------------


def test_deleting_the_image_stops_its_copy_and_leaves_nothing(make_server: Any,
                                                              tmp_path: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(f"""
default_store = "local"
[stores.local]
type = "file"
[stores.file2]
type = "file"
path = "{tmp_path / 'file2'}"
""")
    server = make_server(env={"STREAMD_CONFIG": str(config),
                              "STREAMD_STORE_THROTTLE_MIB_S": "8"})
    data = random.Random(6).randbytes(12 * MiB)  # ~1.5 s to write, ~1.5 s to copy
    image_id = active_in(server, "local", data)
    assert copy_image(server, image_id, stores=["file2"]).status_code == 202
    image = show(server, image_id)
    assert image["status"] == "active"  # downloadable while it is copied, as Glance
    assert image["os_glance_importing_to_stores"] == "file2"
    deadline = time.monotonic() + 5
    while not list((tmp_path / "file2").iterdir()):  # the copy's temp file, being written
        assert time.monotonic() < deadline, "the copy did not start"
        time.sleep(0.02)
    assert httpx.delete(f"{server.url}/v2/images/{image_id}", headers=ADMIN).status_code == 204
    assert list((tmp_path / "file2").iterdir()) == []
    assert not (server.data_dir / "images" / image_id).exists()
    assert httpx.get(f"{server.url}/v2/images/{image_id}", headers=ADMIN).status_code == 404

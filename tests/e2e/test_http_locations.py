"""Image locations on a real server: an http store reading URLs from a web server on loopback.

Two servers share one ranged web server (``tests.range_server``): one as Glance's defaults
(``show_multiple_locations`` off: only ``POST /v2/images/{id}/locations``), one with it on
and two http stores (the registry keeps one copy per store, so two URLs need two). Each
answer is the one Glance 33 gives to the same call (checked against a Glance peer with an
http store); where streamd answers otherwise the test says so.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc as glance_exc

from tests.data_client import create_image, error_of, file_url, show, upload
from tests.range_server import File, RangeServer
from tests.servers import ADMIN_HEADERS as ADMIN
from tests.servers import ServerProcess

MiB = 1024 * 1024
OWNER = {"X-Project-Id": "p-loc", "X-User-Id": "u1", "X-Roles": "member,reader"}
SERVICE = {"X-Project-Id": "p-loc", "X-User-Id": "nova", "X-Roles": "service"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
DATA = random.Random(7).randbytes(3 * MiB + 123)  # past the 1 MiB hashing chunks
OTHER = random.Random(8).randbytes(len(DATA))  # same size, other bytes
SHORT = DATA[:1000]
SHA512 = hashlib.sha512(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()

STORES = """
default_store = "local"
web_download_private_hosts = ["127.0.0.1"]
web_download_allowed_ports = []
show_multiple_locations = {show}

[stores.local]
type = "file"
description = "local disk"

[stores.web]
type = "http"
description = "images on web servers"
cached = false  # what the http store itself reads (ranges); the cache has tests of its own
"""
SECOND_HTTP_STORE = """
[stores.web2]
type = "http"
"""


@pytest.fixture(scope="module")
def origin() -> Iterator[RangeServer]:
    files = {"/image.raw": File(DATA), "/copy.raw": File(DATA), "/other.raw": File(OTHER),
             "/short.raw": File(SHORT), "/empty.raw": File(b"")}
    with RangeServer(files) as server:
        yield server


def _server(base: Path, text: str) -> ServerProcess:
    config = base / "streamd.toml"
    config.write_text(text)
    return ServerProcess(data_dir=base / "data", env={"STREAMD_CONFIG": str(config)})


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Glance's defaults: show_multiple_locations off."""
    with _server(tmp_path_factory.mktemp("loc-off"), STORES.format(show="false")) as server:
        yield server


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """show_multiple_locations on, two http stores."""
    text = STORES.format(show="true") + SECOND_HTTP_STORE
    with _server(tmp_path_factory.mktemp("loc-on"), text) as server:
        yield server


def add_location(server: ServerProcess, image_id: str, url: str,
                 headers: dict[str, str] = OWNER, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/images/{image_id}/locations",
                      json={"url": url, **body}, headers=headers)


def patch(server: ServerProcess, image_id: str, ops: list[dict[str, Any]],
          headers: dict[str, str] = OWNER) -> httpx.Response:
    return httpx.patch(f"{server.url}/v2/images/{image_id}", json=ops,
                       headers={**headers, **PATCH})


def add_op(url: str, **extra: Any) -> dict[str, Any]:
    return {"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}, **extra}}


def locations_of(server: ServerProcess, image_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/v2/images/{image_id}/locations", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def download(server: ServerProcess, image_id: str, byte_range: str | None = None,
             who: dict[str, str] = OWNER) -> httpx.Response:
    headers = {**who, **({"Range": byte_range} if byte_range else {})}
    return httpx.get(file_url(server, image_id), headers=headers, timeout=30)


def tasks_of(server: ServerProcess, image_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/v2/images/{image_id}/tasks", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def checked(server: ServerProcess, image_id: str, timeout: float = 10.0
            ) -> list[dict[str, Any]]:
    """The image's location_import tasks, once none is pending or processing."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = tasks_of(server, image_id)
        if all(t["status"] in ("success", "failure") for t in tasks):
            return tasks
        assert time.monotonic() < deadline, tasks
        time.sleep(0.05)


# -- /v2/info/stores ---------------------------------------------------------------------------


def test_info_stores_shows_the_http_store_read_only(srv: ServerProcess) -> None:
    r = httpx.get(srv.url + "/v2/info/stores", headers=OWNER)
    assert r.json()["stores"] == [
        {"id": "local", "description": "local disk", "default": "true"},
        {"id": "web", "description": "images on web servers", "read-only": "true"},
    ]
    detail = httpx.get(srv.url + "/v2/info/stores/detail", headers=ADMIN).json()["stores"]
    assert detail[1] == {"id": "web", "description": "images on web servers",
                         "read-only": "true", "type": "http", "properties": {}, "weight": 0}


# -- POST /v2/images/{id}/locations ------------------------------------------------------------


def test_a_location_makes_the_image_active_and_downloads_read_it(
    srv: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(srv, OWNER)
    r = add_location(srv, image_id, origin.url("/image.raw"))
    assert (r.status_code, r.content) == (202, b"")  # Glance: 202, no body
    image = show(srv, image_id)  # active already: nothing to verify (Glance: a moment later)
    assert (image["status"], image["size"], image["stores"]) == ("active", len(DATA), "web")
    assert image["os_hash_algo"] == "sha512"  # its digests come next, as Glance's do_secure_hash
    assert "locations" not in image  # show_multiple_locations is off
    (task,) = checked(srv, image_id)  # the job read the URL once and recorded the digests
    assert (task["type"], task["status"], task["input"]["validation_data"]) == (
        "location_import", "success", {})
    image = show(srv, image_id)
    assert image["checksum"] == hashlib.md5(DATA).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(DATA).hexdigest()

    whole = download(srv, image_id)
    assert whole.status_code == 200 and whole.content == DATA
    for asked, (first, last) in {"bytes=1048570-1048600": (1048570, 1048600),
                                 "bytes=-100": (len(DATA) - 100, len(DATA) - 1)}.items():
        part = download(srv, image_id, asked)  # Glance answers 400 for a range here
        assert part.status_code == 206, part.text
        assert part.headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
        assert part.content == DATA[first:last + 1]
    ranged = [q for q in origin.requests if q.method == "GET" and "Range" in q.headers]
    assert ranged[-1].headers["Range"] == f"bytes={len(DATA) - 100}-{len(DATA) - 1}"

    assert locations_of(srv, image_id) == [{"url": origin.url("/image.raw"),
                                            "metadata": {"store": "web"}}]
    again = add_location(srv, image_id, origin.url("/copy.raw"))
    assert again.status_code == 409, again.text  # as Glance: only a queued image
    assert "image status is active" in error_of(again)["message"]


def test_validation_data_is_checked_against_the_data(
    srv: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(srv, OWNER)
    r = add_location(srv, image_id, origin.url("/image.raw"),
                     validation_data={"os_hash_algo": "sha512", "os_hash_value": SHA512})
    assert r.status_code == 202, r.text
    (task,) = checked(srv, image_id)
    assert (task["type"], task["status"]) == ("location_import", "success")
    image = show(srv, image_id)
    assert image["status"] == "active"
    assert (image["size"], image["checksum"], image["os_hash_algo"], image["os_hash_value"]) \
        == (len(DATA), MD5, "sha512", SHA512)  # the digests Glance computes, too
    got = download(srv, image_id)
    assert got.headers.get("content-md5") == MD5, (got.status_code, got.headers, got.text[:300])


def test_a_location_with_the_wrong_hash_is_refused_and_the_image_stays_queued(
    srv: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(srv, OWNER)
    wrong = hashlib.sha256(DATA).hexdigest()[:-1] + "0"  # not this data's
    r = add_location(srv, image_id, origin.url("/image.raw"),
                     validation_data={"os_hash_algo": "sha256", "os_hash_value": wrong})
    assert r.status_code == 202, r.text  # as Glance: the hash is checked after the answer
    (task,) = checked(srv, image_id)
    assert task["status"] == "failure" and "os_hash_value" in task["message"]
    image = show(srv, image_id)
    assert image["status"] == "queued"
    assert image["size"] is None and "stores" not in image and image["checksum"] is None
    assert locations_of(srv, image_id) == []  # Glance leaves the http location in the list
    assert download(srv, image_id).status_code == 204  # no data
    # the image is queued again: a good location still makes it active
    assert add_location(srv, image_id, origin.url("/image.raw")).status_code == 202
    assert show(srv, image_id)["status"] == "active"


@pytest.mark.parametrize(("url", "status", "words"), [
    ("http://169.254.169.254/latest/meta-data", 400, ["link-local"]),  # Glance: 400
    ("http://localhost:{port}/image.raw", 400, ["loopback"]),  # not in private hosts
    ("ftp://127.0.0.1/image.raw", 403, ["http store must be enabled"]),  # as Glance
    ("http://127.0.0.1:{port}/nothing.raw", 400, ["404"]),  # Glance: 202, stays queued
    ("http://127.0.0.1:{port}/empty.raw", 400, ["0 bytes"]),  # Glance: 202, stays queued
])
def test_refused_locations_leave_the_image_queued(
    srv: ServerProcess, origin: RangeServer, url: str, status: int, words: list[str]
) -> None:
    image_id = create_image(srv, OWNER)
    r = add_location(srv, image_id, url.format(port=origin.port))
    assert r.status_code == status, r.text
    for word in words:
        assert word in error_of(r)["message"]
    image = show(srv, image_id)
    assert (image["status"], image["size"]) == ("queued", None)


@pytest.mark.parametrize(("body", "words"), [
    ({}, ["'url' is a required property"]),
    ({"url": 5}, ["not of type 'string'"]),
    ({"url": "{url}", "validation_data": {"os_hash_algo": "sha512"}},
     ["'os_hash_value' is a dependency"]),
    ({"url": "{url}", "validation_data": {"os_hash_algo": "sha384", "os_hash_value": "ab"}},
     ["'sha384' is not one of"]),
    ({"url": "{url}", "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "zz"}},
     ["not a valid hexadecimal value"]),
    ({"url": "{url}", "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab"}},
     ["not the correct size", "(64) bytes"]),
])
def test_bad_bodies_are_400_as_glance(
    srv: ServerProcess, origin: RangeServer, body: dict[str, Any], words: list[str]
) -> None:
    image_id = create_image(srv, OWNER)
    if isinstance(body.get("url"), str):
        body = {**body, "url": origin.url("/image.raw")}
    r = httpx.post(f"{srv.url}/v2/images/{image_id}/locations", json=body, headers=OWNER)
    assert r.status_code == 400, r.text
    for word in words:
        assert word in error_of(r)["message"]
    assert show(srv, image_id)["status"] == "queued"


def test_who_may_add_and_read_locations(srv: ServerProcess, origin: RangeServer) -> None:
    image_id = create_image(srv, OWNER)
    other = {**OWNER, "X-Project-Id": "p-other"}
    assert add_location(srv, image_id, origin.url("/image.raw"), other).status_code == 404
    no_formats = create_image(srv, OWNER, disk_format=None, container_format=None)
    r = add_location(srv, no_formats, origin.url("/image.raw"))
    assert r.status_code == 400, r.text  # Glance: 202, and the image stays queued
    assert add_location(srv, image_id, origin.url("/image.raw")).status_code == 202
    url = f"{srv.url}/v2/images/{image_id}/locations"
    owner_read = httpx.get(url, headers=OWNER)  # fetch_image_location: service or admin
    assert owner_read.status_code == 403, owner_read.text
    assert "fetch_image_location" in error_of(owner_read)["message"]
    assert httpx.get(url, headers=SERVICE).status_code == 200
    elsewhere = {**SERVICE, "X-Project-Id": "p-svc"}  # as Glance: it does not see the image
    assert httpx.get(url, headers=elsewhere).status_code == 404
    assert httpx.put(url, json={}, headers=OWNER).status_code == 405  # as Glance
    assert httpx.delete(url, headers=OWNER).status_code == 405


def test_deleting_the_image_leaves_the_url_alone(srv: ServerProcess, origin: RangeServer
                                                 ) -> None:
    image_id = create_image(srv, OWNER)
    assert add_location(srv, image_id, origin.url("/copy.raw")).status_code == 202
    checked(srv, image_id)  # the digests' read is over
    before = len(origin.requests)
    assert httpx.delete(f"{srv.url}/v2/images/{image_id}", headers=OWNER).status_code == 204
    assert [q.method for q in origin.requests[before:]] == []  # not ours to delete


# -- the PATCH ops, behind show_multiple_locations ---------------------------------------------


@pytest.mark.parametrize(("op", "words"), [
    (add_op("http://127.0.0.1/x.raw"), "add locations if locations are invisible"),
    ({"op": "replace", "path": "/locations",
      "value": [{"url": "http://127.0.0.1/x.raw", "metadata": {}}]},
     "update locations if locations are invisible"),
])
def test_patch_ops_are_403_with_the_setting_off(
    srv: ServerProcess, op: dict[str, Any], words: str
) -> None:
    image_id = create_image(srv, OWNER)
    r = patch(srv, image_id, [op])
    assert r.status_code == 403, r.text  # Glance's words
    assert words in error_of(r)["message"]
    remove = patch(srv, image_id, [{"op": "remove", "path": "/locations/0"}], ADMIN)
    assert remove.status_code == 403
    assert "remove locations if locations are invisible" in error_of(remove)["message"]
    depth = patch(srv, image_id, [{"op": "add", "path": "/locations",
                                   "value": {"url": "http://x", "metadata": {}}}])
    assert depth.status_code == 400  # as Glance: a path depth error before the setting
    assert show(srv, image_id)["status"] == "queued"


def test_patch_add_replace_remove_with_the_setting_on(
    shown: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(shown, OWNER)
    first, second = origin.url("/image.raw"), origin.url("/copy.raw")
    r = patch(shown, image_id, [add_op(first)])
    assert r.status_code == 200, r.text  # as Glance: active at once, size from the server
    body = r.json()
    assert (body["status"], body["size"]) == ("active", len(DATA))
    assert body["locations"] == [{"url": first, "metadata": {"store": "web"}}]
    assert patch(shown, image_id, [add_op(first)]).status_code == 400  # a duplicate, as Glance
    short = patch(shown, image_id, [add_op(origin.url("/short.raw"))])
    assert short.status_code == 400  # the size the image records, or not at all
    assert f"holds {len(SHORT)} bytes" in error_of(short)["message"]
    r = patch(shown, image_id, [add_op(second)])
    assert r.status_code == 200, r.text
    assert [loc["metadata"]["store"] for loc in r.json()["locations"]] == ["web", "web2"]
    third = patch(shown, image_id, [add_op(origin.url("/image.raw?again"))])
    assert third.status_code == 409, third.text  # Glance: 200 (streamd: one per store)

    assert patch(shown, image_id, [{"op": "remove", "path": "/locations/0"}]).status_code \
        == 403  # delete_image_location: admins only, as Glance
    r = patch(shown, image_id, [{"op": "remove", "path": "/locations/0"}], ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["locations"] == [{"url": second, "metadata": {"store": "web2"}}]
    last = patch(shown, image_id, [{"op": "remove", "path": "/locations/-"}], ADMIN)
    assert last.status_code == 403  # as Glance
    assert "Cannot remove last location" in error_of(last)["message"]
    empty = patch(shown, image_id, [{"op": "replace", "path": "/locations", "value": []}])
    assert empty.status_code == 403  # as Glance
    same = patch(shown, image_id, [{"op": "replace", "path": "/locations",
                                    "value": [{"url": second, "metadata": {}}]},
                                   {"op": "replace", "path": "/name", "value": "renamed"}])
    assert same.status_code == 200, same.text  # the same URLs: nothing but the name changes
    assert same.json()["name"] == "renamed"
    other = patch(shown, image_id, [{"op": "replace", "path": "/locations",
                                     "value": [{"url": first, "metadata": {}}]}])
    assert other.status_code == 400  # as Glance: "Original locations is not empty"
    assert download(shown, image_id).content == DATA


def test_locations_past_the_quota_are_413_before_any_url_is_asked(
    shown: ServerProcess, origin: RangeServer
) -> None:
    """Glance's image_location_quota (10) and words; no URL is fetched for a refused op."""
    image_id = create_image(shown, OWNER)
    urls = [{"url": origin.url(f"/image.raw?{i}"), "metadata": {}} for i in range(11)]
    r = patch(shown, image_id, [{"op": "replace", "path": "/locations", "value": urls}])
    assert r.status_code == 413, r.text
    assert ("number of allowed image locations. Attempted: 11, Maximum: 10"
            in error_of(r)["message"])
    assert show(shown, image_id)["status"] == "queued"


def test_patch_add_with_validation_data_is_verified(
    shown: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(shown, OWNER)
    bad = {"os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(OTHER).hexdigest()}
    r = patch(shown, image_id, [add_op(origin.url("/image.raw"), validation_data=bad)])
    assert r.status_code == 200, r.text  # Glance: active with that (wrong) hash
    assert r.json()["status"] == "importing"
    assert [t["status"] for t in checked(shown, image_id)] == ["failure"]
    assert show(shown, image_id)["status"] == "queued"
    algo = patch(shown, image_id, [add_op(origin.url("/image.raw"), validation_data={
        "os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(DATA).hexdigest()})])
    assert algo.status_code == 409  # as Glance: new values only with the cloud's algorithm
    good = {"os_hash_algo": "sha512", "os_hash_value": SHA512, "checksum": MD5}
    r = patch(shown, image_id, [add_op(origin.url("/image.raw"), validation_data=good)])
    assert r.status_code == 200, r.text
    checked(shown, image_id)
    image = show(shown, image_id)
    assert image["status"] == "active"
    assert (image["checksum"], image["os_hash_value"]) == (MD5, SHA512)
    differ = patch(shown, image_id, [add_op(origin.url("/copy.raw"), validation_data=bad)])
    assert differ.status_code == 409  # as Glance: "already set with a different value"


def test_an_uploaded_image_gets_a_verified_url_and_loses_its_file_copy(
    shown: ServerProcess, origin: RangeServer
) -> None:
    image_id = create_image(shown, ADMIN)
    assert upload(shown, image_id, DATA, ADMIN).status_code == 204
    wrong = patch(shown, image_id, [add_op(origin.url("/other.raw"), validation_data={
        "os_hash_algo": "sha512", "os_hash_value": SHA512})], ADMIN)
    assert wrong.status_code == 200, wrong.text  # same size: only the hash tells them apart
    assert [t["status"] for t in checked(shown, image_id)] == ["failure"]
    assert len(locations_of(shown, image_id)) == 1
    r = patch(shown, image_id, [add_op(origin.url("/copy.raw"), validation_data={
        "os_hash_algo": "sha512", "os_hash_value": SHA512})], ADMIN)
    assert r.status_code == 200, r.text
    assert sorted(t["status"] for t in checked(shown, image_id)) == ["failure", "success"]
    copies = locations_of(shown, image_id)
    assert [c["metadata"]["store"] for c in copies] == ["local", "web"]
    assert copies[1]["url"] == origin.url("/copy.raw")  # /other.raw was refused
    file_copy = Path(copies[0]["url"].removeprefix("file://"))
    r = patch(shown, image_id, [{"op": "remove", "path": "/locations/0"}], ADMIN)
    assert r.status_code == 200, r.text
    assert not file_copy.exists()  # as Glance: removing a location deletes its data
    assert download(shown, image_id, who=ADMIN).content == DATA


def test_glanceclient_add_location_and_delete_locations(
    shown: ServerProcess, origin: RangeServer
) -> None:
    client = glanceclient.Client("2", endpoint=shown.url, token="x")
    client.http_client.session.headers.update(OWNER)
    admin = glanceclient.Client("2", endpoint=shown.url, token="x")
    admin.http_client.session.headers.update(ADMIN)
    try:
        image = client.images.create(name="by-url", disk_format="raw", container_format="bare")
        image = client.images.add_location(image.id, origin.url("/image.raw"), {})
        assert (image.status, image.size) == ("active", len(DATA))
        image = client.images.add_location(image.id, origin.url("/copy.raw"), {})
        assert [loc["url"] for loc in image.locations] == [origin.url("/image.raw"),
                                                           origin.url("/copy.raw")]
        with pytest.raises(glance_exc.HTTPBadRequest):
            client.images.add_location(image.id, origin.url("/image.raw"), {})  # a duplicate
        admin.images.delete_locations(image.id, {origin.url("/image.raw")})
        image = client.images.get(image.id)
        assert [loc["url"] for loc in image.locations] == [origin.url("/copy.raw")]
        got = io.BytesIO()
        for chunk in client.images.data(image.id):
            got.write(chunk)
        assert got.getvalue() == DATA
    finally:
        client.http_client.session.close()
        admin.http_client.session.close()

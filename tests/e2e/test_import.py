"""Interoperable image import on a real server: glanceclient's stage + glance-direct and
web-download, Glance's answers to bad requests, the tasks, the size cap, the SSRF filters.

The module's server allows web-download from 127.0.0.1 (``web_download_private_hosts``) on
any port, so that the test's own web server on loopback can be the source; the session's
default server shows what is refused by default.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from glanceclient import Client
from glanceclient import exc as glance_exc

from tests.data_client import MEMBER, OTHER, create_image, error_of, file_url, show, temp_files
from tests.import_client import (
    MiB,
    Route,
    WebServer,
    image_tasks,
    stage,
    staged,
    start_import,
    wait_for_import,
    web_server,
)
from tests.servers import ADMIN_HEADERS, ServerProcess

SIZE_CAP = 4 * MiB


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("import") / "data"
    env = {"STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
           "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": "",
           "STREAMD_IMAGE_SIZE_CAP": str(SIZE_CAP)}
    with ServerProcess(data_dir=data, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    with web_server() as server:
        yield server


@pytest.fixture
def glance(srv: ServerProcess) -> Iterator[Client]:
    client = Client("2", endpoint=srv.url, token="x")
    client.http_client.session.headers.update(MEMBER)
    yield client
    client.http_client.session.close()


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest()


def assert_active_with(srv: ServerProcess, image_id: str, data: bytes) -> None:
    image = wait_for_import(srv, image_id)
    assert image["status"] == "active", image
    assert image["size"] == len(data)
    assert (image["checksum"], image["os_hash_value"]) == digests(data)
    assert image["os_glance_failed_import"] == "" and image["os_glance_importing_to_stores"] == ""
    got = httpx.get(file_url(srv, image_id), headers=MEMBER)
    assert got.status_code == 200 and got.content == data


def test_import_info_and_create_header(srv: ServerProcess, server: ServerProcess) -> None:
    for s in (srv, server):
        r = httpx.get(s.url + "/v2/info/import", headers=MEMBER)
        assert r.status_code == 200
        # copy-image needs a second store: not offered with one
        assert r.json() == {"import-methods": {"description": "Import methods available.",
                                               "type": "array",
                                               "value": ["glance-direct", "web-download"]}}
    r = httpx.post(srv.url + "/v2/images", json={"name": "h"}, headers=MEMBER)
    assert r.headers["OpenStack-image-import-methods"] == "glance-direct,web-download"


def test_glanceclient_stage_and_glance_direct(srv: ServerProcess, glance: Client) -> None:
    data = random.Random(1).randbytes(3 * MiB + 77)
    image = glance.images.create(name="gd", disk_format="raw", container_format="bare")
    glance.images.stage(image["id"], io.BytesIO(data))
    staged_image = show(srv, image["id"])
    # as Glance: uploading, size known, no digests until active
    assert (staged_image["status"], staged_image["size"]) == ("uploading", len(data))
    assert staged_image["checksum"] is None
    head = staged(srv, image["id"])
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(data))
    glance.images.image_import(image["id"], method="glance-direct")
    assert_active_with(srv, image["id"], data)
    assert "os_glance_import_task" not in show(srv, image["id"])
    (task,) = image_tasks(srv, image["id"])
    assert task["status"] == "success" and task["type"] == "api_image_import"
    assert task["input"] == {"image_id": image["id"],
                             "import_req": {"method": {"name": "glance-direct"}},
                             "backend": ["file"]}
    assert task["result"] == {"image_id": image["id"]} and task["expires_at"]
    # the task API: admins only, as Glance's tasks_api_access
    r = httpx.get(f"{srv.url}/v2/tasks/{task['id']}", headers=ADMIN_HEADERS)
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert r.json()["self"] == f"/v2/tasks/{task['id']}"
    listed = httpx.get(f"{srv.url}/v2/tasks", headers=ADMIN_HEADERS).json()
    assert task["id"] in [t["id"] for t in listed["tasks"]]
    assert httpx.get(f"{srv.url}/v2/tasks", headers=MEMBER).status_code == 403
    assert not any((srv.data_dir / "staging").iterdir())  # the stage became the image


def test_glanceclient_web_download(srv: ServerProcess, glance: Client, web: WebServer) -> None:
    data = random.Random(2).randbytes(3 * MiB + 5)
    web.routes["/wd.raw"] = Route(data=data)
    image = glance.images.create(name="wd", disk_format="raw", container_format="bare")
    glance.images.image_import(image["id"], method="web-download", uri=web.url("/wd.raw"))
    assert_active_with(srv, image["id"], data)
    (task,) = image_tasks(srv, image["id"])
    assert task["status"] == "success"
    assert task["input"]["import_req"]["method"]["uri"] == web.url("/wd.raw")


def test_web_download_without_content_length_and_through_a_redirect(
        srv: ServerProcess, web: WebServer) -> None:
    data = random.Random(3).randbytes(MiB + 3)
    web.routes["/plain"] = Route(data=data, content_length=False)
    web.routes["/hop"] = Route(location="/plain")
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/hop")}).status_code == 202
    assert_active_with(srv, image_id, data)


def test_glance_direct_needs_a_complete_stage_and_formats(srv: ServerProcess) -> None:
    image_id = create_image(srv)
    r = start_import(srv, image_id, {"name": "glance-direct"})
    assert r.status_code == 409
    assert "needs to be staged" in error_of(r)["message"]
    bare = create_image(srv, container_format=None)
    assert stage(srv, bare, b"abc").status_code == 204  # as Glance: formats not needed yet
    r = start_import(srv, bare, {"name": "glance-direct"})
    assert r.status_code == 409
    assert error_of(r)["message"] == "'container_format' needs to be set before import"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({}, 400, "Import request requires a 'method' field."),
    ({"method": {}}, 400, "Import request requires a 'name' field."),
    ({"method": {"name": "foo"}}, 400, "Unknown import method name 'foo'."),
    ({"method": {"name": "copy-image"}}, 400, "Unknown import method name 'copy-image'."),
    ({"method": {"name": "glance-direct"}, "all_stores": "yes"}, 400,
     "'all_stores' must be boolean value only"),
    ({"method": {"name": "web-download", "uri": "http://x.test/a"}, "stores": ["nope"]}, 409,
     "Store for identifier nope not found"),
    ({"method": {"name": "web-download", "uri": "ftp://x.test/a"}}, 400,
     "URI for web-download does not pass filtering: ftp://x.test/a"),
    ({"method": {"name": "web-download"}}, 400,
     "URI for web-download does not pass filtering: None"),
])
def test_bad_import_requests_as_glance(srv: ServerProcess, body: dict, status: int,
                                       message: str) -> None:
    image_id = create_image(srv)
    r = httpx.post(f"{srv.url}/v2/images/{image_id}/import", json=body, headers=MEMBER)
    assert r.status_code == status, r.text
    assert error_of(r)["message"].startswith(message)
    assert show(srv, image_id)["status"] == "queued"


def test_import_statuses_and_ownership(srv: ServerProcess, web: WebServer) -> None:
    web.routes["/small"] = Route(data=b"small")
    image_id = create_image(srv)
    r = start_import(srv, image_id, {"name": "web-download", "uri": web.url("/small")},
                     headers=OTHER)
    assert r.status_code == 404  # not visible to another project
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/small")}).status_code == 202
    wait_for_import(srv, image_id)
    r = start_import(srv, image_id, {"name": "web-download", "uri": web.url("/small")})
    assert r.status_code == 409
    assert error_of(r)["message"] == "Image with status active cannot be target for import"
    r = start_import(srv, image_id, {"name": "glance-direct"})
    assert r.status_code == 409


def test_web_download_past_the_size_cap_stops_at_the_cap(srv: ServerProcess,
                                                         web: WebServer) -> None:
    """Without Content-Length the pipeline stops reading one byte past image_size_cap."""
    web.routes["/endless"] = Route(size=256 * MiB, content_length=False)
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/endless")}).status_code == 202
    image = wait_for_import(srv, image_id)
    assert image["status"] == "queued" and image["os_glance_failed_import"] == "file"
    (task,) = image_tasks(srv, image_id)
    assert task["status"] == "failure"
    assert f"limit of {SIZE_CAP} bytes" in task["message"]
    # stopped at the cap: what the socket buffers took, not the 256 MiB on offer
    assert web.routes["/endless"].sent < 64 * MiB
    assert temp_files(srv.data_dir) == []


def test_web_download_announcing_more_than_the_cap_reads_nothing(srv: ServerProcess,
                                                                 web: WebServer) -> None:
    web.routes["/big"] = Route(size=64 * MiB, delay=0.01)
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/big")}).status_code == 202
    assert wait_for_import(srv, image_id)["status"] == "queued"
    (task,) = image_tasks(srv, image_id)
    assert "too large" in task["message"] or "limit" in task["message"]
    assert web.routes["/big"].sent < 16 * MiB


def test_redirect_to_a_loopback_name_is_refused(srv: ServerProcess, web: WebServer) -> None:
    """127.0.0.1 is allowed by name on this server; "localhost" is not, and it resolves to
    a loopback address: the hop is refused when the redirect is followed."""
    web.routes["/secret"] = Route(data=b"internal")
    web.routes["/to-localhost"] = Route(location=web.url("/secret", host="localhost"))
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/to-localhost")}).status_code == 202
    image = wait_for_import(srv, image_id)
    assert image["status"] == "queued"
    (task,) = image_tasks(srv, image_id)
    assert task["status"] == "failure"
    assert "loopback" in task["message"] and "localhost" in task["message"]
    assert web.routes["/secret"].requests == 0


def test_too_many_redirects_are_refused(srv: ServerProcess, web: WebServer) -> None:
    for i in range(7):
        web.routes[f"/r{i}"] = Route(location=f"/r{i + 1}")
    web.routes["/r7"] = Route(data=b"end")
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/r0")}).status_code == 202
    assert wait_for_import(srv, image_id)["status"] == "queued"
    (task,) = image_tasks(srv, image_id)
    assert "more than 5 times" in task["message"]
    assert web.routes["/r7"].requests == 0


def test_a_failed_import_can_be_retried(srv: ServerProcess, web: WebServer) -> None:
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/missing")}).status_code == 202
    image = wait_for_import(srv, image_id)
    assert image["status"] == "queued" and image["os_glance_failed_import"] == "file"
    assert "404" in image_tasks(srv, image_id)[0]["message"]
    web.routes["/present"] = Route(data=b"now it is here")
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/present")}).status_code == 202
    assert_active_with(srv, image_id, b"now it is here")
    # both tasks may share a created_at second, so their listing order is not the proof
    tasks = {t["status"]: t for t in image_tasks(srv, image_id)}
    assert set(tasks) == {"success", "failure"}
    assert "/present" in str(tasks["success"]["input"])
    assert "/missing" in str(tasks["failure"]["input"])


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1/image.raw",
    "http://localhost/image.raw",
    "http://[::1]/image.raw",
    "http://10.1.2.3/image.raw",
    "http://192.168.0.1/image.raw",
    "http://169.254.169.254/latest/meta-data",
])
def test_private_addresses_are_refused_by_default(server: ServerProcess, uri: str) -> None:
    image_id = create_image(server)
    r = start_import(server, image_id, {"name": "web-download", "uri": uri})
    assert r.status_code == 400
    message = error_of(r)["message"]
    assert message.startswith(f"URI for web-download does not pass filtering: {uri}")
    assert "address" in message
    assert show(server, image_id)["status"] == "queued"
    assert image_tasks(server, image_id) == []


def test_ports_are_filtered_as_glance(server: ServerProcess, web: WebServer) -> None:
    image_id = create_image(server)
    r = start_import(server, image_id, {"name": "web-download", "uri": web.url("/x")})
    assert r.status_code == 400
    assert "port" in error_of(r)["message"]


def test_deleting_an_image_removes_its_stage(srv: ServerProcess) -> None:
    image_id = create_image(srv)
    assert stage(srv, image_id, b"to be deleted").status_code == 204
    assert (Path(srv.data_dir) / "staging" / image_id).exists()
    assert httpx.delete(f"{srv.url}/v2/images/{image_id}", headers=MEMBER).status_code == 204
    assert not list((Path(srv.data_dir) / "staging").glob(f"{image_id}*"))


def test_glanceclient_reports_a_refused_import(glance: Client) -> None:
    image = glance.images.create(name="refused", disk_format="raw", container_format="bare")
    with pytest.raises(glance_exc.HTTPConflict):
        glance.images.image_import(image["id"], method="glance-direct")


def test_web_download_counts_against_the_byte_quota(make_server, web: WebServer) -> None:  # noqa: ANN001
    quota = {"STREAMD_QUOTA_IMAGE_SIZE_TOTAL": str(2 * MiB),
             "STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
             "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": ""}
    limited = make_server(env=quota)
    web.routes["/3mib"] = Route(size=3 * MiB, content_length=False)
    image_id = create_image(limited)
    assert start_import(limited, image_id, {"name": "web-download",
                                            "uri": web.url("/3mib")}).status_code == 202
    assert wait_for_import(limited, image_id)["status"] == "queued"
    (task,) = image_tasks(limited, image_id)
    assert "quota_image_size_total" in task["message"]
    web.routes["/2mib"] = Route(size=2 * MiB)
    assert start_import(limited, image_id, {"name": "web-download",
                                            "uri": web.url("/2mib")}).status_code == 202
    assert wait_for_import(limited, image_id)["status"] == "active"
    other = create_image(limited)
    r = start_import(limited, other, {"name": "web-download", "uri": web.url("/2mib")})
    assert r.status_code == 413  # nothing left: refused before a task starts
    assert "quota_image_size_total" in error_of(r)["message"]

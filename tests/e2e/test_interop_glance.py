"""What tempest's image tests found, fixed and compared with Glance 33 on a real server.

- deactivate/reactivate: Glance 33's default rule (an admin, or a member of the owning
  project), the recorded answers of ``tests/record_glance_interop.py`` compared step by step;
- ``x-openstack-request-id`` on every answer (metadata and data routes, errors, the
  dispatcher's own 413), a valid incoming id kept, the id in the server's log and on the
  import task the request started (tempest's glance-direct test compares the two);
- the exact ``size`` filter of ``GET /v2/images``;
- ``POST /v2/tasks`` (Glance's legacy ``import`` task): admin only, bad bodies 400 as
  Glance, a task that succeeds (the image active with the data) and one that fails (the
  image removed, the task says why).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.import_client import MiB, Route, WebServer, stage, web_server
from tests.record_glance_interop import (
    ADMIN,
    IMAGE_BYTES,
    OWNER,
    RECORDING,
    VALID_REQUEST_ID,
    message_of,
    run_sequence,
)
from tests.servers import ServerProcess

REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("interop") / "data"
    env = {"STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
           "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": ""}
    with ServerProcess(data_dir=data, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    with web_server() as server:
        yield server


@pytest.fixture
def http(srv: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client


def test_streamd_answers_as_glance_did(server: ServerProcess) -> None:
    """The recorded sequence: statuses, Glance's phrases, the sizes a listing found, the
    request ids. (The session's default server: web-download filters as Glance's.)"""
    recorded = json.loads(RECORDING.read_text())
    answers = run_sequence(server.url)
    assert [a["step"] for a in answers] == [a["step"] for a in recorded]
    for glance, ours in zip(recorded, answers, strict=True):
        assert ours == glance, glance["step"]


def _active_image(http: httpx.Client, who: dict[str, str], data: bytes = IMAGE_BYTES) -> str:
    r = http.post("/v2/images", headers=who, json={"name": "io", "disk_format": "raw",
                                                   "container_format": "bare"})
    assert r.status_code == 201
    image_id = r.json()["id"]
    r = http.put(f"/v2/images/{image_id}/file", content=data,
                 headers={**who, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204
    return image_id


def test_the_owners_member_deactivates_and_reactivates(http: httpx.Client) -> None:
    image_id = _active_image(http, OWNER)
    assert http.post(f"/v2/images/{image_id}/actions/deactivate",
                     headers=OWNER).status_code == 204
    assert http.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] == "deactivated"
    r = http.get(f"/v2/images/{image_id}/file", headers=OWNER)
    assert r.status_code == 403 and "deactivated" in message_of(r)
    assert http.get(f"/v2/images/{image_id}/file", headers=ADMIN).content == IMAGE_BYTES
    reader = {**OWNER, "X-Roles": "reader"}
    r = http.post(f"/v2/images/{image_id}/actions/reactivate", headers=reader)
    assert r.status_code == 403 and "member role" in message_of(r)
    assert http.post(f"/v2/images/{image_id}/actions/reactivate",
                     headers=OWNER).status_code == 204
    assert http.get(f"/v2/images/{image_id}/file", headers=OWNER).content == IMAGE_BYTES


def test_size_filter_is_exact(http: httpx.Client) -> None:
    project = {**OWNER, "X-Project-Id": "size-filter"}
    small, large = _active_image(http, project, b"s" * 100), _active_image(http, project,
                                                                           b"l" * 101)
    found = http.get("/v2/images?owner=size-filter&size=100", headers=project).json()
    assert [i["id"] for i in found["images"]] == [small]
    found = http.get("/v2/images?owner=size-filter&size=101", headers=project).json()
    assert [i["id"] for i in found["images"]] == [large]
    r = http.get("/v2/images?size=abc", headers=project)
    assert r.status_code == 400 and "size" in message_of(r)  # Glance: an empty page


def test_every_answer_carries_a_request_id(srv: ServerProcess, http: httpx.Client) -> None:
    image_id = _active_image(http, OWNER)
    answers = [
        http.get("/versions"),
        http.get(f"/v2/images/{image_id}", headers=OWNER),
        http.get(f"/v2/images/{image_id}/file", headers=OWNER),
        http.head(f"/v2/images/{image_id}/file", headers=OWNER),
        http.get(f"/v2/images/{image_id}/file", headers={**OWNER, "Range": "bytes=0-9"}),
        http.put(f"/v2/images/{image_id}/file", content=b"x",
                 headers={**OWNER, "Content-Type": "application/octet-stream"}),  # 409
        http.get("/v2/no-such-route", headers=OWNER),
        http.post("/v2/images", headers={**OWNER, **JSON}, content=b"{"),
        http.post("/v2/images", headers={**OWNER, **JSON},
                  content=b"x" * (16 * MiB + 1)),  # the dispatcher's own 413
    ]
    ids = [r.headers.get("x-openstack-request-id", "") for r in answers]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 206, 409, 404, 400, 413]
    assert all(REQUEST_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    for incoming, kept in ((VALID_REQUEST_ID, True), ("req-not-a-uuid", False),
                           (VALID_REQUEST_ID.upper(), False), ("bogus\r", False)):
        r = http.get(f"/v2/images/{image_id}/file",
                     headers={**OWNER, "X-Openstack-Request-Id": incoming.strip()})
        answered = r.headers["x-openstack-request-id"]
        assert (answered == incoming) is kept
        assert REQUEST_ID.fullmatch(answered)
    deadline = time.monotonic() + 5
    while VALID_REQUEST_ID not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"[{VALID_REQUEST_ID}]" in srv.log()


def test_an_import_task_records_the_request_id(srv: ServerProcess, http: httpx.Client) -> None:
    """tempest's glance-direct import test: the import's answer and its task agree."""
    r = http.post("/v2/images", headers=OWNER, json={"name": "gd", "disk_format": "raw",
                                                     "container_format": "bare"})
    image_id = r.json()["id"]
    stage(srv, image_id, IMAGE_BYTES, headers=OWNER)
    r = http.post(f"/v2/images/{image_id}/import", headers=OWNER,
                  json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202
    request_id = r.headers["x-openstack-request-id"]
    deadline = time.monotonic() + 20
    while http.get(f"/v2/images/{image_id}", headers=OWNER).json()["status"] != "active":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (task,) = http.get(f"/v2/images/{image_id}/tasks", headers=OWNER).json()["tasks"]
    assert task["request_id"] == request_id
    assert http.get(f"/v2/tasks/{task['id']}", headers=ADMIN).json()["request_id"] == request_id
    assert f"[{request_id}]" in srv.log()


def _wait_for_task(http: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        task = http.get(f"/v2/tasks/{task_id}", headers=ADMIN).json()
        if task["status"] in ("success", "failure"):
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def test_legacy_import_task_succeeds(http: httpx.Client, web: WebServer) -> None:
    data = random.Random(7).randbytes(2 * MiB + 3)
    web.routes["/legacy.raw"] = Route(data=data)
    properties = {"name": "legacy", "disk_format": "raw", "container_format": "bare",
                  "visibility": "public", "os_distro": "cirros"}
    r = http.post("/v2/tasks", headers=ADMIN, json={"type": "import", "input": {
        "import_from": web.url("/legacy.raw"), "import_from_format": "raw",
        "image_properties": properties}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["type"] == "import" and created["status"] == "pending"
    assert created["owner"] == ADMIN["X-Project-Id"] and created["user_id"] == "io-admin"
    assert created["request_id"] == r.headers["x-openstack-request-id"]
    assert created["input"]["image_properties"] == properties
    assert "image_id" not in created and "expires_at" not in created  # as Glance's 201
    task = _wait_for_task(http, created["id"])
    assert task["status"] == "success", task
    image_id = task["result"]["image_id"]
    image = http.get(f"/v2/images/{image_id}", headers=OWNER).json()  # public: all see it
    assert (image["status"], image["size"], image["visibility"], image["os_distro"]) == (
        "active", len(data), "public", "cirros")
    assert image["owner"] == ADMIN["X-Project-Id"]
    assert http.get(f"/v2/images/{image_id}/file", headers=OWNER).content == data
    assert task["expires_at"] is not None


def test_legacy_import_task_fails_and_removes_its_image(http: httpx.Client,
                                                        web: WebServer) -> None:
    web.routes.pop("/gone.raw", None)  # the web server answers 404
    r = http.post("/v2/tasks", headers=ADMIN, json={"type": "import", "input": {
        "import_from": web.url("/gone.raw"), "import_from_format": "raw",
        "image_properties": {"name": "legacy-gone", "disk_format": "raw",
                             "container_format": "bare"}}})
    assert r.status_code == 201
    task = _wait_for_task(http, r.json()["id"])
    assert task["status"] == "failure" and task["result"] is None
    assert task["message"].startswith("Uploading the image failed due to: ")
    assert "404" in task["message"]
    listed = http.get("/v2/images?name=legacy-gone", headers=ADMIN).json()["images"]
    assert listed == []  # Glance removes the image of a failed task too


def test_legacy_import_task_refusals(http: httpx.Client, srv: ServerProcess) -> None:
    bad = [
        ({"type": "import", "input": {"import_from": "http://127.0.0.1/x"}},
         "Input does not contain 'import_from_format' field"),
        ({"type": "api_image_import", "input": {"image_id": "x"}}, "creates 'import' tasks"),
        ({"type": "import", "input": {}, "status": "success"}, "unknown attribute"),
        ({"type": "import", "input": {"import_from": "http://127.0.0.1/x",
                                      "import_from_format": "raw", "image_properties": []}},
         "image_properties"),
    ]
    for body, phrase in bad:
        r = http.post("/v2/tasks", headers=ADMIN, json=body)
        assert r.status_code == 400 and phrase in message_of(r), (body, r.text)
    r = http.post("/v2/tasks", headers={**ADMIN, **JSON}, content=b"{nope")
    assert r.status_code == 400 and "Malformed JSON" in message_of(r)
    r = http.post("/v2/tasks", headers={**OWNER, **JSON}, content=b"{nope")
    assert r.status_code == 403  # access is checked before the body, as Glance
    assert http.get("/v2/tasks?type=import&status=pending", headers=ADMIN).status_code == 200

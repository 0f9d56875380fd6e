"""A server stopped during an import leaves an image whose import can be retried.

SIGKILL: nothing runs on the way out; start-up puts ``importing`` images back (``queued``,
or ``uploading`` when their stage is still there) and fails their tasks. SIGTERM: the
import job is cancelled and puts its image back itself before the server exits.
"""

from __future__ import annotations

import hashlib
import random
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.data_client import create_image, registry_row, show, temp_files
from tests.import_client import (
    MiB,
    Route,
    WebServer,
    image_tasks,
    stage,
    start_import,
    wait_for_import,
    web_server,
)
from tests.servers import ServerProcess

LOOPBACK_SOURCE = {"STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
                   "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": ""}


@pytest.fixture
def web() -> Iterator[WebServer]:
    with web_server() as server:
        yield server


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def kill(server: ServerProcess) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()


def start_slow_download(srv: ServerProcess, web: WebServer) -> str:
    web.routes["/slow"] = Route(size=16 * MiB, delay=0.05)  # ~5 MiB/s: ~3 s in all
    image_id = create_image(srv)
    assert start_import(srv, image_id, {"name": "web-download",
                                        "uri": web.url("/slow")}).status_code == 202
    wait_until(lambda: web.routes["/slow"].sent > MiB)
    assert show(srv, image_id)["status"] == "importing"
    return image_id


def test_sigkill_mid_web_download_leaves_it_retryable(make_server, web: WebServer) -> None:  # noqa: ANN001
    srv = make_server(env=LOOPBACK_SOURCE)
    image_id = start_slow_download(srv, web)
    kill(srv)
    row = registry_row(srv.data_dir, image_id)
    assert row is not None and row["status"] == "importing"  # as the crash left it
    with ServerProcess(data_dir=srv.data_dir, env=LOOPBACK_SOURCE) as again:
        image = show(again, image_id)
        assert image["status"] == "queued"
        assert image["os_glance_failed_import"] == "file"
        assert image["os_glance_importing_to_stores"] == ""
        assert "os_glance_import_task" not in image
        (task,) = image_tasks(again, image_id)
        assert task["status"] == "failure" and "retry" in task["message"]
        assert temp_files(again.data_dir) == []  # the half-written object is gone
        data = random.Random(9).randbytes(MiB + 1)
        web.routes["/fast"] = Route(data=data)
        assert start_import(again, image_id, {"name": "web-download",
                                              "uri": web.url("/fast")}).status_code == 202
        image = wait_for_import(again, image_id)
        assert image["status"] == "active"
        assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_sigterm_mid_web_download_puts_the_image_back_on_the_way_out(
        make_server, web: WebServer) -> None:  # noqa: ANN001
    srv = make_server(env={**LOOPBACK_SOURCE, "STREAMD_GRACEFUL_TIMEOUT": "0.5"})
    image_id = start_slow_download(srv, web)
    assert srv.stop() == 0
    row = registry_row(srv.data_dir, image_id)
    assert row is not None and row["status"] == "queued"
    assert temp_files(srv.data_dir) == []


def test_sigkill_mid_glance_direct_keeps_the_stage(make_server) -> None:  # noqa: ANN001
    """A throttled store cannot take a hard link: the stage is copied, slowly enough to be
    killed; the stage survives, the image goes back to uploading and imports again."""
    throttled = {"STREAMD_STORE_THROTTLE_MIB_S": "4"}
    srv = make_server(env=throttled)
    data = random.Random(10).randbytes(8 * MiB)
    image_id = create_image(srv)
    assert stage(srv, image_id, data).status_code == 204
    assert start_import(srv, image_id, {"name": "glance-direct"}).status_code == 202
    wait_until(lambda: bool(temp_files(srv.data_dir)))  # the copy is under way
    kill(srv)
    with ServerProcess(data_dir=srv.data_dir, env={"STREAMD_STORE_THROTTLE_MIB_S": "64"}
                       ) as again:
        image = show(again, image_id)
        assert (image["status"], image["size"]) == ("uploading", len(data))
        assert image["os_glance_failed_import"] == "file"
        assert start_import(again, image_id, {"name": "glance-direct"}).status_code == 202
        image = wait_for_import(again, image_id)
        assert image["status"] == "active"
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        # newest first, but both may carry the same second (created_at has whole seconds)
        statuses = [t["status"] for t in image_tasks(again, image_id)]
        assert sorted(statuses) == ["failure", "success"]

"""``workers`` > 1: several server processes on one port, one registry, one store."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import ADMIN_HEADERS, ServerProcess, free_port

OCTET = {**ADMIN_HEADERS, "Content-Type": "application/octet-stream"}


def _workers(srv: ServerProcess) -> list[psutil.Process]:
    assert srv.proc is not None
    return psutil.Process(srv.proc.pid).children()


def _create(srv: ServerProcess, name: str) -> str:
    # a new connection per request: the processes share out connections, not requests
    r = httpx.post(srv.url + "/v2/images", headers=ADMIN_HEADERS,
                   json={"name": name, "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_workers_share_the_port_the_registry_and_the_store(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_WORKERS": "2"})
    (worker,) = _workers(srv)
    ids = [_create(srv, f"w{i}") for i in range(40)]
    pids = set(re.findall(r"^\S+ \S+ (\d+) INFO streamd.images \[[^]]*\] CREATE", srv.log(), re.M))
    assert pids == {str(srv.proc.pid), str(worker.pid)}  # both processes served creates
    assert "Warning" not in srv.log()  # e.g. hypercorn's about config.workers under serve()
    listed = httpx.get(srv.url + "/v2/images?limit=100", headers=ADMIN_HEADERS).json()
    assert {image["id"] for image in listed["images"]} == set(ids)
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 5)
    for image_id in ids[:6]:  # uploads land in either process, downloads in either too
        url = f"{srv.url}/v2/images/{image_id}/file"
        assert httpx.put(url, headers=OCTET, content=data).status_code == 204
        assert httpx.get(url, headers=ADMIN_HEADERS).content == data


def test_sigterm_to_the_primary_stops_every_worker(make_server) -> None:  # noqa: ANN001
    srv = make_server(env={"STREAMD_WORKERS": "3"})
    workers = _workers(srv)
    assert len(workers) == 2
    assert srv.stop() == 0
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []


def test_a_worker_that_dies_takes_the_server_down(make_server) -> None:  # noqa: ANN001
    """Its uploads in flight are left ``saving``: only a restart's repair may reset them."""
    srv = make_server(env={"STREAMD_WORKERS": "2"})
    (worker,) = _workers(srv)
    os.kill(worker.pid, signal.SIGKILL)
    assert srv.proc is not None
    assert srv.proc.wait(timeout=20) == 1
    assert re.search(r"worker 1 \(pid \d+\) exited with -9; stopping the server", srv.log())


def test_only_the_primary_repairs_and_before_workers_start(tmp_path: Path) -> None:
    """A row left ``saving`` and a temp file left by a crash are gone before anyone serves,
    and a worker's start does not touch a temp file of an upload in progress elsewhere."""
    first = ServerProcess(data_dir=tmp_path / "data").start()
    image_id = _create(first, "crashed")
    first.stop()
    with closing(sqlite3.connect(tmp_path / "data" / "registry.sqlite")) as db:
        db.execute("UPDATE images SET status = 'saving' WHERE id = ?", (image_id,))
        db.commit()
    leftover = tmp_path / "data" / "images" / f".{image_id}.0123456789abcdef.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"partial")
    with ServerProcess(data_dir=tmp_path / "data", env={"STREAMD_WORKERS": "2"}) as srv:
        assert not leftover.exists()
        image = httpx.get(f"{srv.url}/v2/images/{image_id}", headers=ADMIN_HEADERS).json()
        assert image["status"] == "queued"
        (worker,) = _workers(srv)
        in_progress = leftover.with_name(f".{image_id}.fedcba9876543210.tmp")
        in_progress.write_bytes(b"another process is writing this")
        # a worker started now (as after the primary's repair) leaves it alone
        worker_log = tmp_path / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
        with open(worker_log, "wb") as out:
            extra = subprocess.Popen(
                # a port of its own: workers share only the socket their primary hands them
                [sys.executable, "-m", "streamd", "serve", "--bind",
                 f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"), "--worker"],
                env={**env, "STREAMD_WORKERS": "2"}, stdout=out, stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 20
                while "Running on" not in worker_log.read_text() and time.monotonic() < deadline:
                    assert extra.poll() is None, worker_log.read_text()
                    time.sleep(0.05)
                assert in_progress.exists()
            finally:
                extra.terminate()
                assert extra.wait(timeout=15) == 0
        assert worker.is_running()


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_must_be_at_least_one(tmp_path: Path, workers: str) -> None:
    srv = ServerProcess(data_dir=tmp_path / "data", env={"STREAMD_WORKERS": workers})
    with pytest.raises(RuntimeError, match="workers"):
        srv.start()

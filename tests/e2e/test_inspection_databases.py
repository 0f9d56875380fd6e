"""What inspection records (``virtual_size``) and undoes (a refused upload or import back to
``queued`` with no data) on the external registries, PostgreSQL and MariaDB: the same
sequence as the comparison with Glance (``tests.glance_inspection``), a few cases each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import disk_images
from tests.glance_inspection import PATHS, run_case
from tests.registry.conftest import migrated_database
from tests.servers import ServerProcess

CASES = {case.name: case for case in disk_images.cases()
         if case.name in ("qcow2", "qcow2_backing_file", "vmdk_stream_optimized",
                          "vmdk_absolute_extent", "qcow2_declared_raw")}


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    base: Path = tmp_path_factory.mktemp(request.param)
    with migrated_database(request.param, base) as engine:
        url = engine.url.render_as_string(hide_password=False)
        with ServerProcess(data_dir=base / "data", args=("--database-url", url)) as server:
            yield server


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(CASES))
def test_inspection_records_and_undoes(srv: ServerProcess, name: str, path: str) -> None:
    case = CASES[name]
    got = run_case(srv.url, case, path)
    if case.accepted:
        assert (got["status"], got["virtual_size"], got["checksum"]) == (
            "active", case.virtual_size, True), got
        return
    assert (got["status"], got["virtual_size"], got["checksum"], got["download"]) == (
        "queued", None, False, 204), got
    assert got.get("upload", 415) == 415
    assert got["again"]["status"] == "active", got

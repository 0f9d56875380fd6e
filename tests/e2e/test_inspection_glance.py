"""Disk-format inspection on a real server, compared with the Glance 33 peer's answers.

Each crafted image of ``tests.disk_images`` goes through ``PUT /file`` and through stage +
glance-direct (``tests.glance_inspection.run_case``); streamd must answer the status codes,
image status and ``virtual_size`` Glance answered (``tests/glance_recordings/
inspection.json``), except where streamd is better on purpose (``expected``): refused data
is not kept. Glance keeps the refused bytes of a ``PUT /file`` (the image is ``queued`` but
has a checksum and downloads them, 200, and a valid upload then fails 500) and leaves a
refused import ``importing`` (or ``uploading``) for good with its task failed, so that
nothing more can be staged or imported (409). streamd leaves the image ``queued`` with no
data and no checksum (the download is 204) and a valid upload or stage + import succeeds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import disk_images
from tests.glance_inspection import PATHS, RECORDING, run_case
from tests.servers import ServerProcess

RECORDED = json.loads(RECORDING.read_text())["answers"]
CASES = {case.name: case for case in disk_images.cases()}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("inspection") / "data") as server:
        yield server


def expected(glance: dict[str, Any], path: str) -> dict[str, Any]:
    """What streamd must answer where Glance answered ``glance``: the same, but for the
    refused data that streamd does not keep (see the module's docstring)."""
    want = copy.deepcopy(glance)
    want.pop("error", None)
    if glance["status"] == "active":
        return want
    want.update(status="queued", checksum=False, download=204, virtual_size=None)
    if path == "file":
        want["again"] = {"upload": 204, "status": "active"}
    else:
        want["task"] = "failure"  # Glance 33 left one of them unfinished after 60 s
        want["again"] = {"stage": 204, "import": 202, "task": "success", "status": "active"}
    return want


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(CASES))
def test_inspection_as_glance(srv: ServerProcess, name: str, path: str) -> None:
    case = CASES[name]
    glance = RECORDED[f"{name}/{path}"]
    assert (glance["status"] == "active") == case.accepted  # the recording is the rules
    got = run_case(srv.url, case, path)
    error = got.pop("error", None)
    assert got == expected(glance, path), error
    if not case.accepted:
        refusal = json.loads(error)["error"] if path == "file" else None
        if refusal is not None:
            assert refusal["code"] == 415
            assert case.disk_format in refusal["message"]
    else:
        assert got["virtual_size"] == case.virtual_size

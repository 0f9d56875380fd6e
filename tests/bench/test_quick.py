"""Smoke test of ``python -m bench``: a tiny quick run against a real streamd server.

It checks that the harness runs end to end (servers, inputs, every workload, stages, the
static ceiling, JSON, Markdown and PNG), not what the figures are. Skipped, with the
reason, while streamd cannot yet create an image and take its data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.goals import GOALS
from bench.machine import damon_schemes, page_reporting
from bench.targets import REPO, StreamdServer

pytestmark = pytest.mark.slow

HEADERS = {"X-Project-Id": "bench-smoke", "X-User-Id": "bench-smoke", "X-Roles": "member,reader"}
RUN_TIMEOUT = 90  # seconds; the run itself takes ~20 s on the 2-core VM


def why_streamd_cannot_serve(data_dir: Path) -> str | None:
    """None when streamd takes an upload; otherwise what failed."""
    try:
        with StreamdServer("probe", data_dir) as server:
            r = httpx.post(f"{server.url}/v2/images", headers=HEADERS,
                           json={"name": "probe", "disk_format": "raw",
                                 "container_format": "bare"})
            if r.status_code != 201:
                return f"POST /v2/images answered {r.status_code}"
            r = httpx.put(f"{server.url}/v2/images/{r.json()['id']}/file", content=b"x" * 4096,
                          headers={**HEADERS, "Content-Type": "application/octet-stream"})
            if r.status_code != 204:
                return f"PUT /v2/images/{{id}}/file answered {r.status_code}"
    except RuntimeError as e:
        return f"streamd does not start: {str(e).splitlines()[0]}"
    return None


def test_quick_run_end_to_end(tmp_path: Path) -> None:
    why = why_streamd_cannot_serve(tmp_path / "probe")
    if why:
        pytest.skip(f"streamd cannot serve image data yet: {why}")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--size", "8MiB", "--images", "40",
         "--range-seconds", "0.3", "--out", str(out), "--tmp-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (json_path,) = out.glob("bench-*-quick.json")
    assert json_path.with_suffix(".png").stat().st_size > 0
    doc = json.loads(json_path.read_text())
    assert not [n for n in doc["notes"] if "failed" in n or "did not start" in n], doc["notes"]
    streamd = doc["figures"]["streamd"]
    for name in ("upload.random.c1", "upload.zero.c1", "upload.random.c8", "download.random.c1",
                 "download.random.c8", "range.random.c1", "range.random.c8", "meta.create.c8",
                 "meta.show.c8", "meta.list.limit25", "meta.list.limit1000"):
        assert streamd[name]["median"] > 0, name
    assert streamd["upload.random.c8.server_rss"]["median"] > 0
    # the whole machine's CPU per GiB beside the server's own (loopback charges TCP work to
    # whoever pushes the segments: bench/sampler.py)
    assert streamd["download.random.c8.machine_cpu"]["median"] > 0
    assert "| download.random.c8.machine_cpu | cpu s/GiB |" in done.stdout
    assert doc["figures"]["streamd-xxh3"]["upload.random.c1"]["median"] > 0
    assert doc["figures"]["static"]["download.random.c8"]["median"] > 0
    assert doc["figures"]["stages"]["md5+sha512.2threads"]["median"] > 0
    assert len(doc["goals"]) == len(GOALS)  # the file-store goals; the Swift group's not run
    # the guest's free page reporting (what new memory costs here), where the kernel has it
    reporting = doc["machine"]["page_reporting"]
    if page_reporting() is None:
        assert reporting is None
    else:
        assert reporting["page_reporting_order"] == page_reporting()["page_reporting_order"]
        assert doc["machine"]["page_reporting_mib_during_run"] >= 0
        assert "Free page reporting: order " in done.stdout
    # what DAMON pages out on its own (the bench's VM: file pages idle for a minute)
    assert doc["machine"]["damon_schemes"] == damon_schemes()
    assert "| upload.random.c1 | MiB/s |" in done.stdout

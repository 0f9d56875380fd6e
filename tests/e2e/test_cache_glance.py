"""Glance's cache API on a real streamd, compared with Glance 33's recorded answers
(``tests/record_glance_cache.py``): statuses step by step, listings body by body, error
messages by their text; and python-glanceclient's cache calls (``cache.list/queue/delete/
clear/prune/clean``) against it.

The server caches a file store (``cached = true``), so no object store is needed here;
the Swift tests are in ``test_cache_swift.py``.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest

from tests.record_glance_cache import RECORDING, run_sequence
from tests.servers import ADMIN_HEADERS, ServerProcess

CACHED_FILE_STORE = '[stores.local]\ntype = "file"\ncached = true\n'


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("cache-glance")
    config = base / "streamd.toml"
    config.write_text(CACHED_FILE_STORE)
    with ServerProcess(data_dir=base / "data", env={"STREAMD_CONFIG": str(config)}) as srv:
        yield srv


def _message(body: Any) -> str:
    """An error's message without Glance's HTML residue."""
    if isinstance(body, dict) and "message" in body:
        return re.sub(r"(<br />)+\s*$", "", body["message"]).strip()
    if isinstance(body, dict) and "error" in body:
        return str(body["error"].get("message", "")).strip()
    return ""


@pytest.fixture(scope="module")
def answers(cached: ServerProcess) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    recorded = json.loads(RECORDING.read_text())["answers"]
    ours = run_sequence(cached.url)
    assert [a["step"] for a in ours] == [a["step"] for a in recorded]
    return list(zip(recorded, ours, strict=True))


def test_statuses_match_glance(answers: list[Any]) -> None:
    differ = [(g["step"], g["status"], s["status"]) for g, s in answers
              if g["status"] != s["status"]]
    assert differ == []
    assert {g["status"] for g, _ in answers} >= {200, 202, 204, 400, 403, 404}


def test_bodies_match_glance(answers: list[Any]) -> None:
    for glance, ours in answers:
        if glance["status"] < 400:
            assert ours["body"] == glance["body"], glance["step"]


def test_errors_say_what_glance_says(answers: list[Any]) -> None:
    for glance, ours in answers:
        if glance["status"] >= 400:
            assert _message(ours["body"]) == _message(glance["body"]), glance["step"]


def test_glanceclient_cache_calls(cached: ServerProcess) -> None:
    glance = glanceclient.Client("2", endpoint=cached.url, token="x")
    glance.http_client.session.headers.update(ADMIN_HEADERS)  # noauth: the identity headers
    data = random.Random(3).randbytes(300_000)
    image = glance.images.create(name="gc-cache", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(data))
    glance.cache.queue(image.id)  # queued, and cached at once
    deadline = time.monotonic() + 30
    while True:
        listing = glance.cache.list()
        if [e["image_id"] for e in listing["cached_images"]] == [image.id]:
            break
        assert time.monotonic() < deadline, listing
        time.sleep(0.05)
    entry = listing["cached_images"][0]
    assert (entry["size"], entry["hits"], listing["queued_images"]) == (300_000, 0, [])
    assert b"".join(glance.images.data(image.id)) == data  # a hit (md5 checked by the client)
    assert glance.cache.list()["cached_images"][0]["hits"] == 1
    assert glance.cache.prune() == {"total_files_pruned": 0, "total_bytes_pruned": 0}
    glance.cache.clean()
    glance.cache.delete(image.id)
    assert glance.cache.list()["cached_images"] == []
    glance.cache.queue(image.id)
    glance.cache.clear("queue")
    glance.cache.clear("both")
    assert glance.cache.list() == {"cached_images": [], "queued_images": []}
    with pytest.raises(glanceclient.exc.HTTPForbidden):
        member = glanceclient.Client("2", endpoint=cached.url, token="x")
        member.http_client.session.headers.update(
            {"X-Project-Id": "p-other", "X-User-Id": "u", "X-Roles": "member"})
        member.cache.list()
    glance.images.delete(image.id)


def test_metrics_count_hits_and_misses(cached: ServerProcess, tmp_path: Path) -> None:
    def counter(text: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    r = httpx.post(cached.url + "/v2/images", headers=ADMIN_HEADERS,
                   json={"disk_format": "raw", "container_format": "bare"})
    image_id = r.json()["id"]
    data = random.Random(4).randbytes(200_000)
    httpx.put(cached.url + f"/v2/images/{image_id}/file", content=data,
              headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"})
    before = httpx.get(cached.url + "/metrics", headers=ADMIN_HEADERS)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    got = httpx.get(cached.url + f"/v2/images/{image_id}/file", headers=ADMIN_HEADERS)
    assert got.content == data  # a miss: it fills the cache
    # the entry exists once the fill is verified and renamed, which may end just after the
    # last byte went out: the second download is a hit only from then on
    deadline = time.monotonic() + 10
    while image_id not in [e["image_id"] for e in httpx.get(
            cached.url + "/v2/cache", headers=ADMIN_HEADERS).json()["cached_images"]]:
        assert time.monotonic() < deadline, "the fill never became a cache entry"
        time.sleep(0.05)
    got = httpx.get(cached.url + f"/v2/images/{image_id}/file", headers=ADMIN_HEADERS)
    assert got.content == data  # a hit
    after = httpx.get(cached.url + "/metrics", headers=ADMIN_HEADERS).text
    assert counter(after, "streamd_cache_misses_total") - \
        counter(before.text, "streamd_cache_misses_total") == 1
    assert counter(after, "streamd_cache_hits_total") - \
        counter(before.text, "streamd_cache_hits_total") == 1
    assert counter(after, 'streamd_cache_fills_total{result="complete"}') >= 1
    httpx.delete(cached.url + f"/v2/images/{image_id}", headers=ADMIN_HEADERS)
    listed = httpx.get(cached.url + "/v2/cache", headers=ADMIN_HEADERS).json()
    assert image_id not in [e["image_id"] for e in listed["cached_images"]]


def test_the_cache_cli(cached: ServerProcess) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
        return subprocess.run([sys.executable, "-m", "streamd", "cache", *args,
                               "--url", cached.url], capture_output=True, text=True,
                              env=env, timeout=60)

    r = httpx.post(cached.url + "/v2/images", headers=ADMIN_HEADERS,
                   json={"disk_format": "raw", "container_format": "bare"})
    image_id = r.json()["id"]
    data = random.Random(5).randbytes(123_456)
    httpx.put(cached.url + f"/v2/images/{image_id}/file", content=data,
              headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"})
    assert cli("queue", image_id).returncode == 0
    deadline = time.monotonic() + 30
    while image_id not in (listed := cli("list")).stdout.split():
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    line = next(x for x in listed.stdout.splitlines() if x.startswith(image_id))
    assert line.split()[1:3] == ["123456", "0"]
    pruned = cli("prune")
    assert (pruned.returncode, pruned.stdout.strip()) == (0, "pruned 0 file(s), 0 bytes")
    assert cli("clean").returncode == 0
    assert cli("delete", image_id).returncode == 0
    assert image_id not in cli("list").stdout
    missing = cli("queue", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 1 and "404" in missing.stderr and "not found" in missing.stderr
    httpx.delete(cached.url + f"/v2/images/{image_id}", headers=ADMIN_HEADERS)


def test_a_deactivated_image_is_not_served_from_the_cache_to_members(
    cached: ServerProcess,
) -> None:
    member = {"X-Project-Id": "p-reader", "X-User-Id": "u-reader", "X-Roles": "member,reader"}
    r = httpx.post(cached.url + "/v2/images", headers=ADMIN_HEADERS,
                   json={"disk_format": "raw", "container_format": "bare",
                         "visibility": "public"})
    image_id = r.json()["id"]
    data = random.Random(6).randbytes(150_000)
    httpx.put(cached.url + f"/v2/images/{image_id}/file", content=data,
              headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"})
    url = cached.url + f"/v2/images/{image_id}/file"
    assert httpx.get(url, headers=member).content == data  # fills the cache
    deadline = time.monotonic() + 30
    while image_id not in str(httpx.get(cached.url + "/v2/cache", headers=ADMIN_HEADERS).json()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    httpx.post(cached.url + f"/v2/images/{image_id}/actions/deactivate",
               headers=ADMIN_HEADERS).raise_for_status()
    refused = httpx.get(url, headers=member)
    assert refused.status_code == 403 and "deactivated" in refused.json()["error"]["message"]
    assert httpx.get(url, headers=ADMIN_HEADERS).content == data  # an admin: a hit
    entry = next(e for e in httpx.get(cached.url + "/v2/cache", headers=ADMIN_HEADERS
                                      ).json()["cached_images"] if e["image_id"] == image_id)
    assert entry["hits"] == 1
    httpx.post(cached.url + f"/v2/images/{image_id}/actions/reactivate", headers=ADMIN_HEADERS)
    httpx.delete(cached.url + f"/v2/images/{image_id}", headers=ADMIN_HEADERS)

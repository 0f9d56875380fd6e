"""The disk-format inspection sequence, and the recorder of Glance's answers to it.

``run_case(url, case, path)`` sends one crafted image (``tests.disk_images``) to any Image
API v2 server, through ``PUT /file`` (``path="file"``) or stage + glance-direct
(``path="import"``), and returns what it answered: each status code, and the image
afterwards (status, ``virtual_size``, a checksum or not, whether its data downloads); when
the data was refused, a valid upload of the same ``disk_format`` is tried next. Run as a
script it records the Glance peer's answers into
``tests/glance_recordings/inspection.json``; ``tests/e2e/test_inspection_glance.py`` runs
the same sequence against streamd and compares, so the suite never needs the peer::

    .venv/bin/python -m tests.glance_inspection [http://127.0.0.1:9393] [CASE/PATH ...]

Naming entries (``qcow2_declared_raw/import``) records only those again, into the existing
recording: the shared peer runs on SQLite and now and then fails an import task for its
own reasons ("database is locked" in its log), which says nothing about the data.

Every image it creates is named ``StreamdRec::inspection`` and deleted at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests import disk_images
from tests.disk_images import Case

RECORDING = Path(__file__).parent / "glance_recordings" / "inspection.json"
GLANCE_URL = "http://127.0.0.1:9393"
HEADERS = {"X-Identity-Status": "Confirmed", "X-Project-Id": "rec-inspection",
           "X-User-Id": "rec-inspector", "X-Roles": "member,reader",
           "Accept": "application/json"}
OCTET = {"Content-Type": "application/octet-stream"}
PATHS = ("file", "import")
NAME = "StreamdRec::inspection"
TASK_TIMEOUT = 60.0  # seconds for an import task to end
UNFINISHED = ("pending", "processing")


def valid_data(disk_format: str) -> bytes:
    """A valid image of ``disk_format``: the re-upload after a refusal."""
    return {"qcow2": disk_images.qcow2, "vmdk": disk_images.vmdk_sparse,
            "raw": lambda: b"streamd valid raw disk " * 1000}[disk_format]()


def run_case(url: str, case: Case, path: str) -> dict[str, Any]:
    """Send ``case`` through ``path``; the answers, with the image deleted afterwards."""
    with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
        r = client.post("/v2/images", json={"name": NAME, "disk_format": case.disk_format,
                                            "container_format": "bare"})
        answers: dict[str, Any] = {"create": r.status_code}
        image_id = r.json()["id"]
        try:
            seen: set[str] = set()  # the tasks of earlier imports
            answers.update(_send(client, image_id, case.data, path, seen))
            refused = answers["status"] != "active"
            if refused:
                again = _send(client, image_id, valid_data(case.disk_format), path, seen)
                answers["again"] = {k: again[k] for k in ("upload", "stage", "import",
                                                          "status", "task") if k in again}
        finally:
            client.delete(f"/v2/images/{image_id}")
    return answers


def _send(client: httpx.Client, image_id: str, data: bytes, path: str, seen: set[str]
          ) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    if path == "file":
        r = client.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)
        answers["upload"] = r.status_code
    else:
        r = client.put(f"/v2/images/{image_id}/stage", content=data, headers=OCTET)
        answers["stage"] = r.status_code
        r = client.post(f"/v2/images/{image_id}/import",
                        json={"method": {"name": "glance-direct"}})
        answers["import"] = r.status_code
        if r.status_code == 202:
            answers["task"] = _wait_for_task(client, image_id, seen)
    if r.status_code >= 400:
        answers["error"] = r.text[:500]
    image = client.get(f"/v2/images/{image_id}").json()
    answers["status"] = image["status"]
    answers["virtual_size"] = image.get("virtual_size")
    answers["checksum"] = image.get("checksum") is not None
    answers["download"] = client.get(f"/v2/images/{image_id}/file").status_code
    return answers


def _wait_for_task(client: httpx.Client, image_id: str, seen: set[str]) -> str:
    """The status of the image's new import task (not in ``seen``) once it has ended."""
    deadline = time.monotonic() + TASK_TIMEOUT
    while True:
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        latest = next((t for t in tasks if t["id"] not in seen), None)
        if latest is not None and latest["status"] not in UNFINISHED:
            seen.add(latest["id"])
            time.sleep(0.5)  # the image's own status changes after the task's
            return str(latest["status"])
        if time.monotonic() > deadline:
            return "unfinished"
        time.sleep(0.1)


def record(url: str = GLANCE_URL, attempts: int = 3, only: set[str] | None = None
           ) -> dict[str, Any]:
    """Glance's answers to every case. An import task the peer has not finished within
    ``TASK_TIMEOUT`` (it happens to a glance-direct of valid data now and then, when the
    shared peer is busy) says nothing about the data: that case is sent again."""
    answers = {}
    for case in disk_images.cases():
        for path in PATHS:
            if only is not None and f"{case.name}/{path}" not in only:
                continue
            for _ in range(attempts):
                got = run_case(url, case, path)
                if "unfinished" not in (got.get("task"), got.get("again", {}).get("task")):
                    break
            answers[f"{case.name}/{path}"] = got
    return {"server": url, "answers": answers}


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else GLANCE_URL
    entries = set(sys.argv[2:]) or None
    recording = record(url, only=entries)
    if entries is not None:  # those entries again, the others as they were
        recording["answers"] = {**json.loads(RECORDING.read_text())["answers"],
                                **recording["answers"]}
    RECORDING.parent.mkdir(exist_ok=True)
    RECORDING.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(recording['answers'])} answers into {RECORDING}")

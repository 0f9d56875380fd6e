"""The scripted cache-API sequence, and the recorder of Glance's answers to it.

``run_sequence(url)`` sends the same calls to any Image API v2 server with a cache (Glance's
``/v2/cache`` routes, API 2.14 and 2.18): list, queue ("cache now"), delete, clear with each
``x-image-cache-clear-target``, prune and clean, as an admin and as a member, for an active
image, an image without data, a deactivated image and an image that does not exist. Run as a
script, it records the Glance peer's answers into ``tests/glance_recordings/cache.json``;
``tests/e2e/test_cache_glance.py`` runs the sequence against streamd and compares, so the
suite never needs the peer::

    .venv/bin/python -m tests.record_glance_cache [http://127.0.0.1:9393]

Only the entries of the images the sequence made are kept from a listing (the peer is
shared); volatile values (ids, times) are replaced by their types.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

RECORDING = Path(__file__).parent / "glance_recordings" / "cache.json"
GLANCE_URL = "http://127.0.0.1:9393"
MISSING = "00000000-0000-4000-8000-00000000c0de"
DATA = random.Random(7).randbytes(100_000)


def _identity(project: str, user: str, role: str) -> dict[str, str]:
    return {"X-Identity-Status": "Confirmed", "X-Project-Id": project, "X-User-Id": user,
            "X-Roles": role, "Accept": "application/json"}


ADMIN = _identity("rec-admin-project", "rec-admin", "admin")
MEMBER = _identity("rec-project-a", "rec-alice", "member,reader")


def _shape(value: Any, mine: set[str]) -> Any:
    """A listing with only the entries of ``mine``; times and serial ids as their types."""
    if isinstance(value, dict) and "cached_images" in value:
        cached = [{k: (type(v).__name__ if k in ("id", "last_accessed", "last_modified") else v)
                   for k, v in entry.items()}
                  for entry in value["cached_images"] if entry.get("image_id") in mine]
        queued = [image_id for image_id in value["queued_images"] if image_id in mine]
        return {"cached_images": cached, "queued_images": queued}
    return value


def _answer(r: httpx.Response, names: dict[str, str], mine: set[str]) -> dict[str, Any]:
    try:
        body: Any = _shape(r.json(), mine)
    except ValueError:
        body = None  # Glance answers errors in HTML; only the status is compared then
    text = json.dumps(body)
    for name, image_id in names.items():
        text = text.replace(image_id, "{" + name + "}")
    return {"status": r.status_code, "body": json.loads(text)}


def _wait_listed(client: httpx.Client, url: str, image_id: str) -> None:
    """Glance caches a queued image in the background: wait until it is listed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = client.get(url + "/v2/cache", headers=ADMIN).json()
        if any(e["image_id"] == image_id for e in listing["cached_images"]):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not cache image {image_id}")


def run_sequence(url: str) -> list[dict[str, Any]]:
    """Every step's name, status and (JSON) body; the images it made are deleted."""
    answers: list[dict[str, Any]] = []
    with httpx.Client(timeout=60) as client:
        made = []
        for name in ("active", "nodata", "deactivated"):
            r = client.post(url + "/v2/images", headers=ADMIN,
                            json={"name": f"streamd-rec-cache-{name}", "disk_format": "raw",
                                  "container_format": "bare"})
            r.raise_for_status()
            made.append(r.json()["id"])
        active, nodata, deactivated = made
        for image_id in (active, deactivated):
            client.put(url + f"/v2/images/{image_id}/file", content=DATA,
                       headers={**ADMIN, "Content-Type": "application/octet-stream"}
                       ).raise_for_status()
        client.post(url + f"/v2/images/{deactivated}/actions/deactivate", headers=ADMIN
                    ).raise_for_status()
        names = {"active": active, "nodata": nodata, "deactivated": deactivated,
                 "missing": MISSING}
        mine = set(made)

        def step(name: str, who: dict[str, str], method: str, path: str,
                 headers: dict[str, str] | None = None) -> None:
            r = client.request(method, url + path.format(**names),
                               headers={**who, **(headers or {})})
            answers.append({"step": name, "method": method, "path": path,
                            "as": "admin" if who is ADMIN else "member",
                            "headers": headers or {}, **_answer(r, names, mine)})

        try:
            step("clear before", ADMIN, "DELETE", "/v2/cache")
            step("list empty", ADMIN, "GET", "/v2/cache")
            step("list as member", MEMBER, "GET", "/v2/cache")
            step("queue as member", MEMBER, "PUT", "/v2/cache/{active}")
            step("queue missing as member", MEMBER, "PUT", "/v2/cache/{missing}")
            step("queue missing", ADMIN, "PUT", "/v2/cache/{missing}")
            step("queue no data", ADMIN, "PUT", "/v2/cache/{nodata}")
            step("queue deactivated", ADMIN, "PUT", "/v2/cache/{deactivated}")
            step("queue active", ADMIN, "PUT", "/v2/cache/{active}")
            _wait_listed(client, url, active)
            step("list cached", ADMIN, "GET", "/v2/cache")
            client.get(url + f"/v2/images/{active}/file", headers=ADMIN).raise_for_status()
            step("list after a hit", ADMIN, "GET", "/v2/cache")
            step("queue cached", ADMIN, "PUT", "/v2/cache/{active}")
            step("delete as member", MEMBER, "DELETE", "/v2/cache/{active}")
            step("delete missing", ADMIN, "DELETE", "/v2/cache/{missing}")
            step("delete cached", ADMIN, "DELETE", "/v2/cache/{active}")
            step("delete again", ADMIN, "DELETE", "/v2/cache/{active}")
            step("list after delete", ADMIN, "GET", "/v2/cache")
            step("clear bad target", ADMIN, "DELETE", "/v2/cache",
                 {"x-image-cache-clear-target": "bogus"})
            step("clear cache", ADMIN, "DELETE", "/v2/cache",
                 {"x-image-cache-clear-target": "cache"})
            step("clear queue", ADMIN, "DELETE", "/v2/cache",
                 {"x-image-cache-clear-target": "queue"})
            step("clear as member", MEMBER, "DELETE", "/v2/cache")
            step("prune", ADMIN, "POST", "/v2/cache/prune")
            step("prune as member", MEMBER, "POST", "/v2/cache/prune")
            step("clean", ADMIN, "POST", "/v2/cache/clean")
            step("clean as member", MEMBER, "POST", "/v2/cache/clean")
        finally:
            client.delete(url + f"/v2/cache/{active}", headers=ADMIN)
            for image_id in made:
                client.delete(url + f"/v2/images/{image_id}", headers=ADMIN)
    return answers


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else GLANCE_URL
    answers = run_sequence(url)
    RECORDING.write_text(json.dumps({"source": url, "glance": "33 (2025.1 peer, cache on)",
                                     "answers": answers}, indent=1) + "\n")
    print(f"recorded {len(answers)} answers into {RECORDING}")


if __name__ == "__main__":
    main()

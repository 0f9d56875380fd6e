"""What tempest's image tests found, asked of Glance 33: the recorder of its answers.

``run_sequence(url)`` sends the same calls to any Image API v2 server (Glance's noauth
identity headers) and returns each answer: deactivate/reactivate by the owner's member, by
its reader, by another project, of a queued image; the ``size`` filter; the
``x-openstack-request-id`` of answers (a valid incoming one kept); ``POST /v2/tasks`` by a
member and with bad bodies (Glance checks the legacy task's URI when it creates it).

Run as a script it records the Glance peer's answers into
``tests/glance_recordings/interop.json``; ``tests/e2e/test_interop_glance.py`` runs the
sequence against streamd and compares::

    .venv/bin/python -m tests.record_glance_interop [http://127.0.0.1:9393]

Each step's ``phrase`` is a few words Glance's answer says (the recorder checks that it
does); streamd's message must say them too.
"""

from __future__ import annotations

import html
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

RECORDING = Path(__file__).parent / "glance_recordings" / "interop.json"
GLANCE_URL = "http://127.0.0.1:9393"
IMAGE_BYTES = b"interop!" * 154 + b"xx"  # 1234 bytes: the size filter looks for this size
VALID_REQUEST_ID = "req-3f1c9a5e-1b7d-4c2a-9e8f-0a1b2c3d4e5f"


def _identity(project: str, user: str, roles: str) -> dict[str, str]:
    return {"X-Identity-Status": "Confirmed", "X-Project-Id": project, "X-User-Id": user,
            "X-Roles": roles}


# Keystone expands member to member + reader (implied roles); the peer sees no Keystone
OWNER = _identity("interop-owner", "io-alice", "member,reader")
READER = _identity("interop-owner", "io-carol", "reader")
OTHER = _identity("interop-other", "io-bob", "member,reader")
ADMIN = _identity("interop-admin", "io-admin", "admin,member,reader")

LEGACY_INPUT = {"import_from_format": "raw",
                "image_properties": {"disk_format": "raw", "container_format": "bare"}}


def steps(name: str) -> list[tuple[str, dict[str, str], str, str, Any, str | None]]:
    """(step, identity, method, path, JSON body or None, phrase) with {image}/{queued}/
    {community} for the ids of the images the sequence made."""
    image, queued = "/v2/images/{image}", "/v2/images/{queued}"
    legacy = "/v2/tasks"
    return [
        ("reader of the owner's project deactivates", READER, "POST",
         f"{image}/actions/deactivate", None, "not authorized to complete deactivate action"),
        ("another project deactivates a community image", OTHER, "POST",
         "/v2/images/{community}/actions/deactivate", None,
         "not authorized to complete deactivate action"),
        ("owner's member deactivates", OWNER, "POST", f"{image}/actions/deactivate", None,
         None),
        ("owner's member deactivates again", OWNER, "POST", f"{image}/actions/deactivate",
         None, None),
        ("owner downloads the deactivated image", OWNER, "GET", f"{image}/file", None,
         "has been deactivated"),
        ("reader of the owner's project reactivates", READER, "POST",
         f"{image}/actions/reactivate", None, "not authorized to complete reactivate action"),
        ("owner's member reactivates", OWNER, "POST", f"{image}/actions/reactivate", None,
         None),
        ("owner's member reactivates again", OWNER, "POST", f"{image}/actions/reactivate",
         None, None),
        ("owner deactivates a queued image", OWNER, "POST", f"{queued}/actions/deactivate",
         None, "Not allowed to deactivate image in status 'queued'"),
        ("list size=1234", OWNER, "GET", f"/v2/images?name={name}&size=1234", None, None),
        ("list size=1233", OWNER, "GET", f"/v2/images?name={name}&size=1233", None, None),
        ("list size=1234 and size_min=2000", OWNER, "GET",
         f"/v2/images?name={name}&size=1234&size_min=2000", None, None),
        ("list size_min=size_max=1234", OWNER, "GET",
         f"/v2/images?name={name}&size_min=1234&size_max=1234", None, None),
        ("member creates a task", OWNER, "POST", legacy,
         {"type": "import", "input": {"import_from": "http://example.com/x.img",
                                      **LEGACY_INPUT}},
         "not authorized to complete tasks_api_access action"),
        ("task without type", ADMIN, "POST", legacy, {"input": {}}, "Task 'type' is required"),
        ("task without input", ADMIN, "POST", legacy, {"type": "import"},
         "Task 'input' is required"),
        ("task of an unknown type", ADMIN, "POST", legacy, {"type": "export", "input": {}},
         "'export' is not one of"),
        ("task whose input is no object", ADMIN, "POST", legacy,
         {"type": "import", "input": "x"}, "is not of type 'null', 'object'"),
        ("import task without import_from", ADMIN, "POST", legacy,
         {"type": "import", "input": {}}, "Invalid location: None"),
        ("import task from a file", ADMIN, "POST", legacy,
         {"type": "import", "input": {"import_from": "file:///etc/passwd", **LEGACY_INPUT}},
         "File based imports are not allowed"),
        ("import task over ftp", ADMIN, "POST", legacy,
         {"type": "import", "input": {"import_from": "ftp://example.com/x.img",
                                      **LEGACY_INPUT}},
         "The given uri is not valid"),
        ("import task from a port the filters refuse", ADMIN, "POST", legacy,
         {"type": "import", "input": {"import_from": "http://127.0.0.1:1/x.img",
                                      **LEGACY_INPUT}},
         "URI for legacy import task does not pass filtering"),
        ("import task from a host that does not resolve", ADMIN, "POST", legacy,
         {"type": "import", "input": {"import_from": "http://dummy-img-file-1234.qcow2",
                                      **LEGACY_INPUT}},
         "URI for legacy import task does not pass filtering"),
    ]


def message_of(response: httpx.Response) -> str:
    """The text of an error: streamd's JSON message, or Glance's HTML page without tags."""
    try:
        body = response.json()
    except ValueError:
        return html.unescape(re.sub(r"<[^>]+>", " ", response.text))
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message") if isinstance(error, dict) else body)


def _create(client: httpx.Client, who: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post("/v2/images", headers=who, json=body)
    r.raise_for_status()
    return r.json()["id"]


def run_sequence(url: str) -> list[dict[str, Any]]:
    """Send every step to the server at ``url``: each answer's status, phrase found, the
    image names a listing returned, and the request ids of three answers."""
    name = f"interop-{uuid.uuid4().hex[:8]}"
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        ids = {"image": _create(client, OWNER, {"name": name, "disk_format": "raw",
                                                "container_format": "bare"}),
               "queued": _create(client, OWNER, {"name": f"{name}-queued"}),
               "community": _create(client, OWNER, {"name": f"{name}-community",
                                                    "visibility": "community"})}
        r = client.put(f"/v2/images/{ids['image']}/file", content=IMAGE_BYTES,
                       headers={**OWNER, "Content-Type": "application/octet-stream"})
        r.raise_for_status()
        try:
            for step, who, method, path, body, phrase in steps(name):
                r = client.request(method, path.format(**ids), headers=who, json=body)
                answer: dict[str, Any] = {"step": step, "status": r.status_code,
                                          "phrase": phrase}
                if phrase is not None:
                    answer["says_phrase"] = phrase in message_of(r)
                if r.status_code == 200 and path.startswith("/v2/images?"):
                    answer["sizes"] = [i["size"] for i in r.json()["images"]]
                answers.append(answer)
            answers.append(_request_ids(client, ids["image"]))
        finally:
            for image_id in ids.values():
                client.delete(f"/v2/images/{image_id}", headers=OWNER)
    return answers


def _request_ids(client: httpx.Client, image_id: str) -> dict[str, Any]:
    """Which ``x-openstack-request-id`` a show, a download and a 404 answer carry."""
    found: dict[str, Any] = {"step": "request ids"}
    for what, path in (("show", f"/v2/images/{image_id}"),
                       ("download", f"/v2/images/{image_id}/file"),
                       ("missing", f"/v2/images/{uuid.uuid4()}")):
        fresh = client.get(path, headers=OWNER).headers.get("x-openstack-request-id", "")
        kept = client.get(path, headers={**OWNER, "X-Openstack-Request-Id":
                                         VALID_REQUEST_ID}).headers.get(
            "x-openstack-request-id")
        found[what] = {"fresh_is_req_uuid": bool(re.fullmatch(
            r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", fresh)),
            "valid_incoming_kept": kept == VALID_REQUEST_ID}
    return found


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else GLANCE_URL
    answers = run_sequence(url)
    unsaid = [a["step"] for a in answers if a.get("says_phrase") is False]
    if unsaid:
        sys.exit(f"the peer did not say the expected phrase in: {unsaid}")
    RECORDING.parent.mkdir(exist_ok=True)
    RECORDING.write_text(json.dumps(answers, indent=1) + "\n")
    for a in answers:
        print(a.get("status", ""), a["step"], a.get("sizes", ""))


if __name__ == "__main__":
    main()

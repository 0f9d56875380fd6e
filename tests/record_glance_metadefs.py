"""The scripted metadefs sequence, and the recorder of Glance's answers to it.

``run_sequence(url)`` sends the same ~100 calls (good and bad: duplicates, a non-admin
write, an invalid JSON-schema fragment, a private namespace read from another project, an
unknown resource type …) to any Image API v2 server and returns each answer. Run as a
script, it records the Glance peer's answers into ``tests/glance_recordings/metadefs.json``;
``tests/test_metadefs_glance.py`` runs the sequence against streamd and compares, so the
suite never needs the peer::

    .venv/bin/python -m tests.record_glance_metadefs [http://127.0.0.1:9393]

The names start with ``StreamdRec::`` and the sequence removes what it made, so it can be
re-run on a peer that others use; a first step removes what an interrupted run left.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

RECORDING = Path(__file__).parent / "glance_recordings" / "metadefs.json"
GLANCE_URL = "http://127.0.0.1:9393"

NS = "StreamdRec::Compute"
PRIVATE = "StreamdRec::Private"
FLAVOR = "StreamdRec::Flavor"
IMAGE = "StreamdRec::Image"
VOLUME = "StreamdRec::Volume"


def _identity(project: str, user: str, role: str) -> dict[str, str]:
    return {"X-Identity-Status": "Confirmed", "X-Project-Id": project, "X-User-Id": user,
            "X-Roles": role, "Accept": "application/json"}


ADMIN = _identity("rec-admin-project", "rec-admin", "admin")
# Keystone expands member to member + reader (implied roles); the peer sees no Keystone
MEMBER_A = _identity("rec-project-a", "rec-alice", "member,reader")
MEMBER_B = _identity("rec-project-b", "rec-bob", "member,reader")

NAMESPACE = {
    "namespace": NS,
    "display_name": "Recorded compute",
    "description": "Namespace the comparison with Glance creates.",
    "visibility": "public",
    "protected": True,
    "resource_type_associations": [
        {"name": FLAVOR, "prefix": "rec:"},
        {"name": IMAGE, "prefix": "rec_", "properties_target": "image"},
    ],
    "properties": {
        "cpu_count": {"title": "CPUs", "type": "integer", "minimum": 1, "maximum": 64,
                      "description": "How many."},
        "mode": {"title": "Mode", "type": "string", "enum": ["fast", "slow"],
                 "default": "fast"},
    },
    "objects": [
        {"name": "Pinning", "description": "Pinning policy.", "required": ["policy"],
         "properties": {"policy": {"title": "Policy", "type": "string",
                                   "enum": ["shared", "dedicated"]},
                        "threads": {"title": "Threads", "type": "array",
                                    "items": {"type": "string", "enum": ["a", "b"]},
                                    "uniqueItems": True}}},
    ],
    "tags": [{"name": "fast"}],
}

# (step name, identity, method, path, JSON body or None, extra headers)
Step = tuple[str, dict[str, str], str, str, Any, dict[str, str]]


def steps() -> list[Step]:
    ns = f"/v2/metadefs/namespaces/{NS}"
    private = f"/v2/metadefs/namespaces/{PRIVATE}"
    listing = f"/v2/metadefs/namespaces?resource_types={FLAVOR},{IMAGE}"
    bad_prop = {"name": "bad", "title": "Bad", "type": "integer", "minimum": "low"}
    return [
        ("create namespace", ADMIN, "POST", "/v2/metadefs/namespaces", NAMESPACE, {}),
        ("create duplicate namespace", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"namespace": NS}, {}),
        ("member creates namespace", MEMBER_A, "POST", "/v2/metadefs/namespaces",
         {"namespace": "StreamdRec::ByMember"}, {}),
        ("namespace without a name", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"display_name": "x"}, {}),
        ("namespace with a bad visibility", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"namespace": "StreamdRec::Bad", "visibility": "shared"}, {}),
        ("namespace with a read-only field", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"namespace": "StreamdRec::Bad", "self": "/x"}, {}),
        ("namespace with an invalid property type", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"namespace": "StreamdRec::Bad",
          "properties": {"p": {"title": "P", "type": "blob"}}}, {}),
        ("namespace with an unknown attribute in a property definition", ADMIN, "POST",
         "/v2/metadefs/namespaces",
         {"namespace": "StreamdRec::Bad",
          "properties": {"p": {"title": "P", "type": "string", "colour": 1}}}, {}),
        ("show namespace", ADMIN, "GET", ns, None, {}),
        ("show namespace as another project", MEMBER_B, "GET", ns, None, {}),
        ("show namespace with a resource type prefix", ADMIN, "GET",
         f"{ns}?resource_type={FLAVOR}", None, {}),
        ("show namespace with an unassociated resource type", ADMIN, "GET",
         f"{ns}?resource_type=StreamdRec::Other", None, {}),
        ("show missing namespace", ADMIN, "GET", "/v2/metadefs/namespaces/StreamdRec::None",
         None, {}),
        ("create private namespace for project a", ADMIN, "POST", "/v2/metadefs/namespaces",
         {"namespace": PRIVATE, "visibility": "private", "owner": "rec-project-a",
          "resource_type_associations": [{"name": IMAGE}]}, {}),
        ("owner project sees private namespace", MEMBER_A, "GET", private, None, {}),
        ("other project does not see private namespace", MEMBER_B, "GET", private, None, {}),
        ("list by resource types", ADMIN, "GET", listing, None, {}),
        ("list by resource types, ascending", ADMIN, "GET",
         f"{listing}&sort_key=namespace&sort_dir=asc", None, {}),
        ("list as another project hides private", MEMBER_B, "GET", listing, None, {}),
        ("list private only", MEMBER_A, "GET", f"{listing}&visibility=private", None, {}),
        ("list one per page", ADMIN, "GET", f"{listing}&limit=1&sort_key=namespace",
         None, {}),
        ("list from a marker", ADMIN, "GET",
         f"{listing}&limit=1&sort_key=namespace&marker={NS}", None, {}),
        ("list with a bad visibility", ADMIN, "GET", f"{listing}&visibility=shared", None, {}),
        ("list with a bad sort direction", ADMIN, "GET", f"{listing}&sort_dir=up", None, {}),
        ("list with a negative limit", ADMIN, "GET", f"{listing}&limit=-1", None, {}),
        ("list from an unknown marker", ADMIN, "GET", f"{listing}&marker=StreamdRec::None",
         None, {}),
        ("list with a limit that is no number", ADMIN, "GET", f"{listing}&limit=ten", None,
         {}),
        ("list with an unknown resource type", ADMIN, "GET",
         "/v2/metadefs/namespaces?resource_types=StreamdRec::Nothing", None, {}),
        ("update namespace", ADMIN, "PUT", ns,
         {"namespace": NS, "display_name": "Recorded compute 2", "visibility": "public",
          "protected": True, "description": "Changed."}, {}),
        ("member updates namespace", MEMBER_A, "PUT", ns,
         {"namespace": NS, "description": "mine"}, {}),
        ("rename private namespace onto an existing name", ADMIN, "PUT", private,
         {"namespace": NS, "visibility": "private", "owner": "rec-project-a"}, {}),
        ("delete protected namespace", ADMIN, "DELETE", ns, None, {}),
        # properties
        ("create property", ADMIN, "POST", f"{ns}/properties",
         {"name": "ram", "title": "RAM", "type": "integer", "minimum": 0}, {}),
        ("create duplicate property", ADMIN, "POST", f"{ns}/properties",
         {"name": "ram", "title": "RAM", "type": "integer"}, {}),
        ("create property with an invalid fragment", ADMIN, "POST", f"{ns}/properties",
         bad_prop, {}),
        ("create property without a title", ADMIN, "POST", f"{ns}/properties",
         {"name": "t", "type": "string"}, {}),
        ("member creates property", MEMBER_A, "POST", f"{ns}/properties",
         {"name": "m", "title": "M", "type": "string"}, {}),
        ("owner member creates property in its private namespace", MEMBER_A, "POST",
         f"{private}/properties", {"name": "m", "title": "M", "type": "string"}, {}),
        ("list properties", ADMIN, "GET", f"{ns}/properties", None, {}),
        ("show property", ADMIN, "GET", f"{ns}/properties/cpu_count", None, {}),
        ("show property by its prefixed name", ADMIN, "GET",
         f"{ns}/properties/rec:cpu_count?resource_type={FLAVOR}", None, {}),
        ("show property without the prefix", ADMIN, "GET",
         f"{ns}/properties/cpu_count?resource_type={FLAVOR}", None, {}),
        ("update property", ADMIN, "PUT", f"{ns}/properties/ram",
         {"name": "ram_mb", "title": "RAM (MiB)", "type": "integer", "minimum": 16}, {}),
        ("update property with an invalid fragment", ADMIN, "PUT", f"{ns}/properties/ram_mb",
         {"name": "ram_mb", "title": "RAM", "type": "integer", "maximum": [1]}, {}),
        ("invalid property for a namespace the caller cannot see", MEMBER_B, "POST",
         f"{private}/properties", bad_prop, {}),
        ("show missing property", ADMIN, "GET", f"{ns}/properties/ram", None, {}),
        ("delete property", ADMIN, "DELETE", f"{ns}/properties/ram_mb", None, {}),
        # objects
        ("create object", ADMIN, "POST", f"{ns}/objects",
         {"name": "Disk", "description": "Disk settings.", "required": ["bus"],
          "properties": {"bus": {"title": "Bus", "type": "string",
                                 "enum": ["virtio", "scsi"]}}}, {}),
        ("create duplicate object", ADMIN, "POST", f"{ns}/objects", {"name": "Disk"}, {}),
        ("create object with an invalid property", ADMIN, "POST", f"{ns}/objects",
         {"name": "Broken", "properties": {"x": {"title": "X", "type": "nothing"}}}, {}),
        ("create object with a name only", ADMIN, "POST", f"{ns}/objects",
         {"name": "Bare"}, {}),
        ("show object with a name only", ADMIN, "GET", f"{ns}/objects/Bare", None, {}),
        ("list objects", ADMIN, "GET", f"{ns}/objects", None, {}),
        ("show object", ADMIN, "GET", f"{ns}/objects/Disk", None, {}),
        ("update object", ADMIN, "PUT", f"{ns}/objects/Disk",
         {"name": "Disk", "description": "Changed.", "required": [],
          "properties": {"bus": {"title": "Bus", "type": "string"}}}, {}),
        ("member deletes object", MEMBER_A, "DELETE", f"{ns}/objects/Disk", None, {}),
        ("delete object", ADMIN, "DELETE", f"{ns}/objects/Disk", None, {}),
        ("show deleted object", ADMIN, "GET", f"{ns}/objects/Disk", None, {}),
        # tags
        ("create tag", ADMIN, "POST", f"{ns}/tags/slow", None, {}),
        ("create duplicate tag", ADMIN, "POST", f"{ns}/tags/slow", None, {}),
        ("create tags, replacing", ADMIN, "POST", f"{ns}/tags",
         {"tags": [{"name": "one"}, {"name": "two"}]}, {}),
        ("create tags, appending", ADMIN, "POST", f"{ns}/tags",
         {"tags": [{"name": "three"}]}, {"X-Openstack-Append": "True"}),
        ("create tags with a duplicate in the request", ADMIN, "POST", f"{ns}/tags",
         {"tags": [{"name": "dup"}, {"name": "dup"}]}, {}),
        ("list tags", ADMIN, "GET", f"{ns}/tags", None, {}),
        ("list tags by name, two", ADMIN, "GET", f"{ns}/tags?sort_key=name&sort_dir=asc&limit=2",
         None, {}),
        ("list tags after a marker", ADMIN, "GET",
         f"{ns}/tags?sort_key=name&sort_dir=asc&marker=one", None, {}),
        ("list tags after an unknown marker", ADMIN, "GET", f"{ns}/tags?marker=nine", None, {}),
        ("list tags with a bad sort direction", ADMIN, "GET", f"{ns}/tags?sort_dir=up", None,
         {}),
        ("show tag", ADMIN, "GET", f"{ns}/tags/two", None, {}),
        ("rename tag", ADMIN, "PUT", f"{ns}/tags/two", {"name": "deux"}, {}),
        ("delete tag", ADMIN, "DELETE", f"{ns}/tags/deux", None, {}),
        ("show missing tag", ADMIN, "GET", f"{ns}/tags/deux", None, {}),
        ("tags of a private namespace from another project", MEMBER_B, "GET",
         f"{private}/tags", None, {}),
        # resource types
        ("list resource types", ADMIN, "GET", "/v2/metadefs/resource_types", None, {}),
        ("associate resource type", ADMIN, "POST", f"{ns}/resource_types",
         {"name": VOLUME, "prefix": "vol_", "properties_target": "image"}, {}),
        ("associate it again", ADMIN, "POST", f"{ns}/resource_types",
         {"name": VOLUME, "prefix": "vol_"}, {}),
        ("associate without a name", ADMIN, "POST", f"{ns}/resource_types",
         {"prefix": "x_"}, {}),
        ("list namespace resource types", ADMIN, "GET", f"{ns}/resource_types", None, {}),
        ("dissociate resource type", ADMIN, "DELETE", f"{ns}/resource_types/{VOLUME}",
         None, {}),
        ("dissociate an unknown resource type", ADMIN, "DELETE",
         f"{ns}/resource_types/StreamdRec::Unknown", None, {}),
        ("member associates resource type", MEMBER_A, "POST", f"{ns}/resource_types",
         {"name": VOLUME}, {}),
        # clearing a namespace, then deleting it
        ("clear objects of protected namespace", ADMIN, "DELETE", f"{ns}/objects", None, {}),
        ("unprotect namespace", ADMIN, "PUT", ns,
         {"namespace": NS, "visibility": "public", "protected": False}, {}),
        # (in the private namespace: what Glance stores here stays out of the answers
        # about the first namespace)
        ("create property with a pattern that is no regular expression", ADMIN, "POST",
         f"{private}/properties",
         {"name": "re", "title": "RE", "type": "string", "pattern": "["}, {}),
        ("create property with an empty enum", ADMIN, "POST", f"{private}/properties",
         {"name": "none", "title": "None", "type": "string", "enum": []}, {}),
        ("create property with an unknown attribute in its items", ADMIN, "POST",
         f"{private}/properties", {"name": "it", "title": "It", "type": "array",
                                   "items": {"type": "string", "colour": 1}}, {}),
        ("create property with a number as default", ADMIN, "POST", f"{private}/properties",
         {"name": "eight", "title": "Eight", "type": "integer", "default": 8}, {}),
        ("show property with a number as default", ADMIN, "GET",
         f"{private}/properties/eight", None, {}),
        ("create object with an unknown attribute in a property", ADMIN, "POST",
         f"{private}/objects",
         {"name": "Odd", "properties": {"p": {"title": "P", "type": "string", "colour": 1}}},
         {}),
        ("list with an unknown sort key", ADMIN, "GET", f"{listing}&sort_key=colour", None,
         {}),
        ("clear objects", ADMIN, "DELETE", f"{ns}/objects", None, {}),
        ("clear properties", ADMIN, "DELETE", f"{ns}/properties", None, {}),
        ("clear tags", ADMIN, "DELETE", f"{ns}/tags", None, {}),
        ("show cleared namespace", ADMIN, "GET", ns, None, {}),
        ("member deletes private namespace of its project", MEMBER_A, "DELETE", private,
         None, {}),
        ("delete namespace", ADMIN, "DELETE", ns, None, {}),
        ("delete private namespace", ADMIN, "DELETE", private, None, {}),
        ("show deleted namespace", ADMIN, "GET", ns, None, {}),
        ("schema task", ADMIN, "GET", "/v2/schemas/task", None, {}),
        ("schema tasks", ADMIN, "GET", "/v2/schemas/tasks", None, {}),
        *[(f"schema metadefs/{name}", ADMIN, "GET", f"/v2/schemas/metadefs/{name}", None, {})
          for name in ("namespace", "namespaces", "property", "properties", "object",
                       "objects", "tag", "tags", "resource_type", "resource_types")],
    ]


def _cleanup(client: httpx.Client) -> None:
    for name in (NS, PRIVATE):
        path = f"/v2/metadefs/namespaces/{name}"
        client.put(path, headers=ADMIN, json={"namespace": name, "protected": False})
        client.delete(path, headers=ADMIN)


def run_sequence(url: str) -> list[dict[str, Any]]:
    """Send every step to the server at ``url``; each answer's status and JSON body."""
    answers = []
    with httpx.Client(base_url=url, timeout=30) as client:
        _cleanup(client)
        for name, identity, method, path, body, extra in steps():
            response = client.request(method, path, headers={**identity, **extra},
                                      json=body)
            try:
                answer = response.json() if response.content else None
            except ValueError:
                answer = {"not-json": response.text[:200]}
            answers.append({"step": name, "method": method, "path": path,
                            "status": response.status_code, "body": answer})
        _cleanup(client)
    return answers


def _statuses(answers: list[dict[str, Any]]) -> list[int]:
    return [a["status"] for a in answers]


def main() -> None:
    """Record once the peer answers two runs in a row with the same statuses: a peer that
    others use can fail a call now and then (its SQLite "database is locked": a 500)."""
    url = sys.argv[1] if len(sys.argv) > 1 else GLANCE_URL
    answers = run_sequence(url)
    for _ in range(5):
        again = run_sequence(url)
        if _statuses(again) == _statuses(answers):
            break
        answers = again
    else:
        sys.exit("the peer's answers kept changing between runs; not recorded")
    RECORDING.parent.mkdir(exist_ok=True)
    RECORDING.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    for a in answers:
        print(a["status"], a["step"])


if __name__ == "__main__":
    main()

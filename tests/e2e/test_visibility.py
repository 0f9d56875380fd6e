"""Who sees which image, table-driven: every visibility × every kind of caller × every way
of looking (listings with and without filters, show, download, the member list).

The expectations are what Glance 33 answered to the same requests (probed with the same
images, members and headers); streamd must hide everything Glance hides and show
everything Glance shows. A "member" of a private, public or community image was added while
the image was shared, and the image's visibility changed afterwards: Glance keeps such
member entries but they give no access unless the image is shared again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import ServerProcess

VISIBILITIES = ("private", "shared", "public", "community")
CALLERS = ("owner", "accepted", "pending", "rejected", "other", "admin")
T, F = True, False

# caller -> (listed by default, listed with visibility=<its visibility>,
#            listed with member_status=all, listed with member_status=pending,
#            listed with visibility=all, show, download, GET …/members)
GLANCE: dict[str, dict[str, tuple[Any, ...]]] = {
    "private": {
        "owner": (T, T, T, T, T, 200, 200, 403),
        "accepted": (F, F, F, F, F, 404, 404, 404),
        "pending": (F, F, F, F, F, 404, 404, 404),
        "rejected": (F, F, F, F, F, 404, 404, 404),
        "other": (F, F, F, F, F, 404, 404, 404),
        "admin": (T, T, T, T, T, 200, 200, 403),
    },
    "shared": {
        "owner": (T, T, T, T, T, 200, 200, 200),
        "accepted": (T, T, T, F, T, 200, 200, 200),
        "pending": (F, F, T, T, F, 200, 200, 200),
        "rejected": (F, F, T, F, F, 200, 200, 200),
        "other": (F, F, F, F, F, 404, 404, 404),
        "admin": (T, T, T, T, T, 200, 200, 200),
    },
    "public": {caller: (T, T, T, T, T, 200, 200, 403) for caller in CALLERS},
    "community": {
        "owner": (T, T, T, T, T, 200, 200, 403),
        **{caller: (F, T, F, F, T, 200, 200, 403)
           for caller in ("accepted", "pending", "rejected", "other", "admin")},
    },
}
COLUMNS = ("list", "list visibility=<it>", "list member_status=all",
           "list member_status=pending", "list visibility=all", "show", "download", "members")
DATA = b"0123456789"


def headers(project: str, roles: str = "member,reader") -> dict[str, str]:
    return {"X-Project-Id": project, "X-User-Id": f"user-of-{project}", "X-Roles": roles}


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """One image of each visibility with data and three members (accepted, pending,
    rejected), all owned by one project; callers' headers by role."""
    run = uuid.uuid4().hex[:8]
    callers = {name: headers(f"vis-{run}-{name}") for name in CALLERS}
    callers["admin"] = headers(f"vis-{run}-admin", "admin")
    owner = callers["owner"]
    tag = f"vis-{run}"
    ids: dict[str, str] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for visibility in VISIBILITIES:
            r = client.post("/v2/images", headers=owner, json={
                "name": f"vis-{visibility}", "disk_format": "raw", "container_format": "bare",
                "tags": [tag]})
            assert r.status_code == 201, r.text
            image_id = ids[visibility] = r.json()["id"]
            r = client.put(f"/v2/images/{image_id}/file", content=DATA,
                           headers={**owner, "Content-Type": "application/octet-stream"})
            assert r.status_code == 204, r.text
            for member, status in (("accepted", "accepted"), ("pending", None),
                                   ("rejected", "rejected")):
                project = callers[member]["X-Project-Id"]
                r = client.post(f"/v2/images/{image_id}/members", headers=owner,
                                json={"member": project})
                assert r.status_code == 200, r.text
                if status:
                    r = client.put(f"/v2/images/{image_id}/members/{project}",
                                   headers=callers[member], json={"status": status})
                    assert r.status_code == 200, r.text
            if visibility != "shared":
                r = client.patch(f"/v2/images/{image_id}", headers={
                    **callers["admin"],
                    "Content-Type": "application/openstack-images-v2.1-json-patch"},
                    json=[{"op": "replace", "path": "/visibility", "value": visibility}])
                assert r.status_code == 200, r.text
        yield {"ids": ids, "callers": callers, "tag": tag, "client": client}
        for image_id in ids.values():
            client.delete(f"/v2/images/{image_id}", headers=callers["admin"])


def observe(world: dict[str, Any], visibility: str, caller: str) -> tuple[Any, ...]:
    client: httpx.Client = world["client"]
    image_id = world["ids"][visibility]
    h = world["callers"][caller]

    def listed(**params: str) -> bool:
        r = client.get("/v2/images", headers=h, params={"tag": world["tag"], **params})
        assert r.status_code == 200, r.text
        return image_id in [i["id"] for i in r.json()["images"]]

    download = client.get(f"/v2/images/{image_id}/file", headers=h)
    if download.status_code == 200:
        assert download.content == DATA
    return (
        listed(),
        listed(visibility=visibility),
        listed(member_status="all"),
        listed(member_status="pending"),
        listed(visibility="all"),
        client.get(f"/v2/images/{image_id}", headers=h).status_code,
        download.status_code,
        client.get(f"/v2/images/{image_id}/members", headers=h).status_code,
    )


@pytest.mark.parametrize("visibility", VISIBILITIES)
def test_streamd_shows_what_glance_shows(world: dict[str, Any], visibility: str) -> None:
    mismatches = []
    for caller in CALLERS:
        seen = observe(world, visibility, caller)
        expected = GLANCE[visibility][caller]
        for column, got, want in zip(COLUMNS, seen, expected, strict=True):
            if got != want:
                mismatches.append(f"{visibility} image, {caller}: {column} is {got}, "
                                  f"Glance: {want}")
    assert not mismatches, "\n".join(mismatches)


def test_members_see_only_their_own_entry(world: dict[str, Any]) -> None:
    client: httpx.Client = world["client"]
    callers = world["callers"]
    image_id = world["ids"]["shared"]
    owner_view = client.get(f"/v2/images/{image_id}/members", headers=callers["owner"]).json()
    assert {m["status"] for m in owner_view["members"]} == {"accepted", "pending", "rejected"}
    assert owner_view["schema"] == "/v2/schemas/members"
    for member in ("accepted", "pending", "rejected"):
        project = callers[member]["X-Project-Id"]
        mine = client.get(f"/v2/images/{image_id}/members", headers=callers[member]).json()
        assert [m["member_id"] for m in mine["members"]] == [project]
        others = [callers[m]["X-Project-Id"] for m in ("accepted", "pending", "rejected")
                  if m != member]
        for other in others:  # another member's entry does not exist for it
            r = client.get(f"/v2/images/{image_id}/members/{other}", headers=callers[member])
            assert r.status_code == 404
            r = client.put(f"/v2/images/{image_id}/members/{other}", headers=callers[member],
                           json={"status": "accepted"})
            assert r.status_code == 404


def test_marker_of_an_image_offered_but_not_accepted(world: dict[str, Any]) -> None:
    """A pending member may page from the shared image, as in Glance: a marker must be
    visible, and a pending member sees the image. For an image the caller cannot see, Glance
    answers 403 ("image … not visible"), which tells that the id exists; streamd answers the
    400 of a marker that does not exist."""
    client: httpx.Client = world["client"]
    image_id = world["ids"]["shared"]
    r = client.get("/v2/images", headers=world["callers"]["pending"],
                   params={"marker": image_id, "member_status": "pending"})
    assert r.status_code == 200, r.text
    r = client.get("/v2/images", headers=world["callers"]["other"],
                   params={"marker": image_id})
    assert r.status_code == 400

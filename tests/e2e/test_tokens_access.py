"""A server in ``auth = tokens`` mode, driven by glanceclient and httpx with the tokens of an
owner, a member, another project and an admin — and by anonymous callers, who get 401
everywhere but the version documents, data routes included.

The same server checks what only some roles may do: deactivate/reactivate (admins and the
owner's members), the data of a deactivated image (admins only), protected images (no
deletion), hidden images (left out of listings), and protected properties
(``protected_properties``: admins only).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glanceclient
import httpx
import pytest
from glanceclient import exc

from tests.errors import error_of
from tests.servers import ServerProcess

TOKENS = {
    "owner": ("tok-owner-0123456789", "tk-owner", ["member", "reader"]),
    "member": ("tok-member-0123456789", "tk-member", ["member", "reader"]),
    "other": ("tok-other-0123456789", "tk-other", ["member", "reader"]),
    "admin": ("tok-admin-0123456789", "tk-admin", ["admin", "member"]),
}
PATCH = "application/openstack-images-v2.1-json-patch"


@pytest.fixture(scope="module")
def tokens_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tokens")
    tokens = root / "tokens.toml"
    tokens.write_text("".join(
        f'[tokens.{token}]\nproject_id = "{project}"\nuser_id = "{name}"\nroles = {roles!r}\n'
        .replace("'", '"')
        for name, (token, project, roles) in TOKENS.items()))
    env = {"STREAMD_AUTH": "tokens", "STREAMD_TOKENS_FILE": str(tokens),
           "STREAMD_PROTECTED_PROPERTIES": "x_billing_*,owner_note"}
    with ServerProcess(data_dir=root / "data", env=env) as srv:
        yield srv


def glance(server: ServerProcess, who: str) -> Any:
    return glanceclient.Client("2", endpoint=server.url, token=TOKENS[who][0])


@pytest.fixture(scope="module")
def clients(tokens_server: ServerProcess) -> Iterator[dict[str, Any]]:
    made = {who: glance(tokens_server, who) for who in TOKENS}
    yield made
    for client in made.values():  # idle keep-alive connections would delay shutdown
        client.http_client.session.close()


@pytest.fixture
def http(tokens_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tokens_server.url, timeout=30) as client:
        yield client


def auth(who: str) -> dict[str, str]:
    return {"X-Auth-Token": TOKENS[who][0]}


@pytest.fixture
def image(clients: dict[str, Any]) -> Iterator[Any]:
    """An active, shared image of the owner with 5 bytes, offered to and accepted by member."""
    owner = clients["owner"]
    created = owner.images.create(name=f"tok-{uuid.uuid4().hex[:8]}", disk_format="raw",
                                  container_format="bare")
    owner.images.upload(created.id, io.BytesIO(b"hello"))
    owner.image_members.create(created.id, TOKENS["member"][1])
    clients["member"].image_members.update(created.id, TOKENS["member"][1], "accepted")
    yield owner.images.get(created.id)
    try:
        clients["admin"].images.update(created.id, protected=False)
        clients["admin"].images.delete(created.id)
    except exc.HTTPNotFound:
        pass


def test_anonymous_callers_get_401_except_for_versions(
    http: httpx.Client, image: Any
) -> None:
    assert http.get("/versions").status_code == 200
    assert http.get("/").status_code == 300
    file = f"/v2/images/{image.id}/file"
    for method, path, kwargs in [
        ("GET", "/v2/images", {}),
        ("POST", "/v2/images", {"json": {"name": "x"}}),
        ("GET", f"/v2/images/{image.id}", {}),
        ("DELETE", f"/v2/images/{image.id}", {}),
        ("GET", f"/v2/images/{image.id}/members", {}),
        ("POST", f"/v2/images/{image.id}/actions/deactivate", {}),
        ("GET", "/v2/schemas/image", {}),
        ("GET", "/v2/info/usage", {}),
        ("GET", "/v2/no-such-route", {}),
        ("GET", file, {}),
        ("HEAD", file, {}),
        ("PUT", file, {"content": b"x" * 100_000,
                       "headers": {"Content-Type": "application/octet-stream"}}),
    ]:
        for headers in ({}, {"X-Auth-Token": "not-a-token-anyone-has"},
                        {"X-Project-Id": "tk-owner", "X-Roles": "admin"}):  # noauth headers
            extra = kwargs.get("headers", {})
            r = http.request(method, path, **{**kwargs, "headers": {**extra, **headers}})
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"].startswith("Token")
            if method != "HEAD":
                assert "X-Auth-Token" in error_of(r)["message"]
    # nothing was changed by the refused requests
    assert http.get(f"/v2/images/{image.id}", headers=auth("owner")).json()["status"] == "active"


def test_glanceclient_with_tokens(clients: dict[str, Any], image: Any) -> None:
    owner, member, other, admin = (clients[w] for w in ("owner", "member", "other", "admin"))
    assert image.owner == TOKENS["owner"][1]
    assert b"".join(member.images.data(image.id)) == b"hello"
    assert image.id in [i.id for i in member.images.list()]
    with pytest.raises(exc.HTTPNotFound):
        other.images.get(image.id)
    with pytest.raises(exc.HTTPForbidden):
        member.images.update(image.id, name="taken")
    with pytest.raises(exc.HTTPForbidden, match="publicize"):
        owner.images.update(image.id, visibility="public")
    admin.images.update(image.id, visibility="public")
    assert other.images.get(image.id).visibility == "public"
    owner.images.update(image.id, visibility="community")  # owners may do that
    with pytest.raises(exc.HTTPUnauthorized):
        glanceclient.Client("2", endpoint=clients["owner"].http_client.endpoint,
                            token="wrong-token-123").images.get(image.id)


def test_deactivate_and_reactivate(clients: dict[str, Any], http: httpx.Client,
                                   image: Any) -> None:
    owner, member, other, admin = (clients[w] for w in ("owner", "member", "other", "admin"))
    with pytest.raises(exc.HTTPForbidden, match="member role in the image's project"):
        member.images.deactivate(image.id)  # a member project of the shared image
    with pytest.raises(exc.HTTPNotFound):
        other.images.deactivate(image.id)
    owner.images.deactivate(image.id)  # Glance 33: a member of the owning project may
    admin.images.deactivate(image.id)  # again: nothing to do, as in Glance
    assert owner.images.get(image.id).status == "deactivated"
    assert image.id in [i.id for i in owner.images.list()]  # still listed
    for who in ("owner", "member"):
        r = http.get(f"/v2/images/{image.id}/file", headers=auth(who))
        assert r.status_code == 403
        assert "deactivated" in error_of(r)["message"]
    assert b"".join(admin.images.data(image.id)) == b"hello"
    with pytest.raises(exc.HTTPForbidden, match="member role in the image's project"):
        member.images.reactivate(image.id)
    owner.images.reactivate(image.id)
    admin.images.reactivate(image.id)
    assert b"".join(member.images.data(image.id)) == b"hello"

    queued = owner.images.create(name="queued")
    try:
        for action in ("deactivate", "reactivate"):
            r = http.post(f"/v2/images/{queued.id}/actions/{action}", headers=auth("admin"))
            assert r.status_code == 403  # Glance: "Not allowed to … image in status 'queued'"
            assert "status 'queued'" in error_of(r)["message"]
        r = http.get(f"/v2/images/{queued.id}/actions/deactivate", headers=auth("admin"))
        assert r.status_code == 405
    finally:
        owner.images.delete(queued.id)


def test_protected_images_are_not_deleted(clients: dict[str, Any], image: Any) -> None:
    owner, admin = clients["owner"], clients["admin"]
    owner.images.update(image.id, protected=True)
    for who in (owner, admin):
        with pytest.raises(exc.HTTPForbidden, match="protected"):
            who.images.delete(image.id)
    with pytest.raises(exc.HTTPForbidden):
        clients["member"].images.update(image.id, protected=False)
    owner.images.update(image.id, protected=False)
    owner.images.delete(image.id)


def test_hidden_images_are_listed_only_when_asked(clients: dict[str, Any], image: Any) -> None:
    owner, member = clients["owner"], clients["member"]
    owner.images.update(image.id, os_hidden=True)
    for who in (owner, member):
        assert image.id not in [i.id for i in who.images.list()]
        assert image.id in [i.id for i in who.images.list(filters={"os_hidden": True})]
        assert who.images.get(image.id).os_hidden is True


def test_protected_properties_are_for_admins(clients: dict[str, Any], tmp_path: Path,
                                             http: httpx.Client) -> None:
    owner, admin = clients["owner"], clients["admin"]
    with pytest.raises(exc.HTTPForbidden, match="x_billing_code"):
        owner.images.create(name="billed", x_billing_code="42")
    image = admin.images.create(name="billed", owner=TOKENS["owner"][1],
                                x_billing_code="42", owner_note="n", free_note="f")
    try:
        for change in ({"x_billing_code": "43"}, {"x_billing_other": "1"},
                       {"owner_note": "m"}):
            with pytest.raises(exc.HTTPForbidden, match="protected"):
                owner.images.update(image.id, **change)
        with pytest.raises(exc.HTTPForbidden, match="remove"):
            owner.images.update(image.id, remove_props=["owner_note"])
        # everything else stays the owner's to change; protected ones are readable
        updated = owner.images.update(image.id, free_note="g", owner_notes="prefix-free")
        assert updated.x_billing_code == "42" and updated.free_note == "g"
        admin.images.update(image.id, x_billing_code="44", remove_props=["owner_note"])
        shown = owner.images.get(image.id)
        assert shown.x_billing_code == "44" and "owner_note" not in shown
    finally:
        admin.images.delete(image.id)

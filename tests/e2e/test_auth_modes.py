"""Choosing who is asking, on real servers: ``noauth`` refuses a non-loopback bind unless told,
and ``keystone`` validates tokens with a real Keystone 30 (``tests/keystone_server.py``, the
session's ``keystone`` fixture; streamd with a service user of its own). The faults a real
Keystone will not produce on demand (an expired token, Keystone down) use the fake.

The refusal is checked by starting ``streamd serve --bind 0.0.0.0:PORT``: it must exit before
it listens, so no traffic ever goes there.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import glanceclient
import httpx
import pytest
from glanceclient import exc

from tests.errors import error_of
from tests.fake_keystone import FakeKeystone
from tests.keystone_server import KeystoneServer
from tests.servers import ServerProcess, free_port


def test_noauth_on_a_non_loopback_address_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    done = subprocess.run(
        [sys.executable, "-m", "streamd", "serve", "--bind", f"0.0.0.0:{free_port()}",
         "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "noauth_allow_remote" in done.stderr and "loopback" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # stopped before touching anything


@pytest.fixture(scope="module")
def keystone_server(keystone: KeystoneServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """streamd as an operator runs it: its own service user (the ``service`` role, all that
    validating tokens takes under Keystone's default policy) in project ``service``."""
    service = keystone.user("service", f"streamd-{uuid.uuid4().hex[:6]}", ["service"])
    env = {"STREAMD_AUTH": "keystone", "STREAMD_KEYSTONE_URL": keystone.url,
           "STREAMD_KEYSTONE_SERVICE_USER": service.name,
           "STREAMD_KEYSTONE_SERVICE_PASSWORD": service.password,
           "STREAMD_KEYSTONE_SERVICE_PROJECT": "service",
           "STREAMD_KEYSTONE_SERVICE_DOMAIN": "Default"}
    root = tmp_path_factory.mktemp("keystone")
    with ServerProcess(data_dir=root / "data", env=env) as srv:
        yield srv


def test_keystone_tokens_through_glanceclient(keystone: KeystoneServer,
                                              keystone_server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    owner_user = keystone.user(f"ks-owner-{tag}", f"olivia-{tag}", ["member"])
    member_user = keystone.user(f"ks-member-{tag}", f"mia-{tag}", ["member"])
    reader_user = keystone.user(f"ks-owner-{tag}", f"rita-{tag}", ["reader"])
    admin_user = keystone.user(f"ks-admin-{tag}", f"ada-{tag}", ["admin"])
    owner, member, reader, admin = (
        glanceclient.Client("2", endpoint=keystone_server.url, token=u.token)
        for u in (owner_user, member_user, reader_user, admin_user))
    try:
        image = owner.images.create(name="ks", disk_format="raw", container_format="bare")
        assert image.owner == owner_user.project_id
        owner.images.upload(image.id, io.BytesIO(b"keystone"))
        with pytest.raises(exc.HTTPNotFound):
            member.images.get(image.id)
        owner.image_members.create(image.id, member_user.project_id)
        assert b"".join(member.images.data(image.id)) == b"keystone"
        assert reader.images.get(image.id).id == image.id  # its own project's image
        with pytest.raises(exc.HTTPForbidden):  # but its data is for members (Glance 33)
            b"".join(reader.images.data(image.id))
        with pytest.raises(exc.HTTPForbidden):
            member.images.deactivate(image.id)  # another project: not its image
        with pytest.raises(exc.HTTPForbidden):
            reader.images.deactivate(image.id)  # the owner's project, but only a reader
        owner.images.deactivate(image.id)  # a member of the owning project may (Glance 33)
        admin.images.reactivate(image.id)
        # the answer is cached (keystone_cache_ttl): a token revoked since still works
        keystone.revoke(owner_user.token)
        assert owner.images.get(image.id).id == image.id
        owner.images.delete(image.id)
    finally:
        for client in (owner, member, reader, admin):
            client.http_client.session.close()


def test_keystone_refusals(keystone: KeystoneServer, keystone_server: ServerProcess) -> None:
    with httpx.Client(base_url=keystone_server.url) as http:
        assert http.get("/versions").status_code == 200
        for headers in ({}, {"X-Auth-Token": "never-issued"},
                        {"X-Project-Id": "p", "X-Roles": "admin"}):
            for path in ("/v2/images", "/v2/images/x/file"):
                r = http.get(path, headers=headers)
                assert r.status_code == 401
                assert r.headers["www-authenticate"] == f'Keystone uri="{keystone.url}"'
                assert "X-Auth-Token" in error_of(r)["message"]
        user = keystone.user(f"ks-revoked-{uuid.uuid4().hex[:6]}", "rex", ["member"])
        keystone.revoke(user.token)  # never validated by streamd: refused at once
        assert http.get("/v2/images", headers={"X-Auth-Token": user.token}).status_code == 401


@pytest.fixture(scope="module")
def fake_keystone() -> Iterator[FakeKeystone]:
    with FakeKeystone() as fake:
        fake.service_tokens.add("streamd-service-token")
        yield fake


def test_keystone_faults(fake_keystone: FakeKeystone,
                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a real Keystone will not do on demand (the fake's faults): a token that has
    expired, and Keystone down (503, as keystonemiddleware)."""
    keystone = fake_keystone
    env = {"STREAMD_AUTH": "keystone", "STREAMD_KEYSTONE_URL": keystone.url,
           "STREAMD_KEYSTONE_SERVICE_TOKEN": "streamd-service-token"}
    root = tmp_path_factory.mktemp("keystone-faults")
    with ServerProcess(data_dir=root / "data", env=env) as srv, \
            httpx.Client(base_url=srv.url) as http:
        expired = keystone.issue("ks-owner", "olivia", ["member"], expires_in=-1)
        assert http.get("/v2/images", headers={"X-Auth-Token": expired}).status_code == 401
        keystone.down = True
        try:
            fresh = keystone.issue("ks-owner", "olivia", ["member"])
            r = http.get("/v2/images", headers={"X-Auth-Token": fresh})
            assert r.status_code == 503  # as keystonemiddleware: identity service trouble
            assert "identity service" in error_of(r)["message"]
        finally:
            keystone.down = False
        assert http.get("/v2/images", headers={"X-Auth-Token": fresh}).status_code == 200

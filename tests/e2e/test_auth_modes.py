"""Choosing who is asking, on real servers: ``noauth`` refuses a non-loopback bind unless told,
and ``keystone`` validates tokens with a (fake, loopback) Keystone v3.

The refusal is checked by starting ``streamd serve --bind 0.0.0.0:PORT``: it must exit before
it listens, so no traffic ever goes there.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import glanceclient
import httpx
import pytest
from glanceclient import exc

from tests.errors import error_of
from tests.fake_keystone import FakeKeystone
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
def keystone() -> Iterator[FakeKeystone]:
    with FakeKeystone() as fake:
        fake.service_tokens.add("streamd-service-token")
        yield fake


@pytest.fixture(scope="module")
def keystone_server(keystone: FakeKeystone,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"STREAMD_AUTH": "keystone", "STREAMD_KEYSTONE_URL": keystone.url,
           "STREAMD_KEYSTONE_SERVICE_TOKEN": "streamd-service-token"}
    root = tmp_path_factory.mktemp("keystone")
    with ServerProcess(data_dir=root / "data", env=env) as srv:
        yield srv


def test_keystone_tokens_through_glanceclient(keystone: FakeKeystone,
                                              keystone_server: ServerProcess) -> None:
    owner_token = keystone.issue("ks-owner", "olivia", ["member", "reader"])
    member_token = keystone.issue("ks-member", "mia", ["member"])
    admin_token = keystone.issue("ks-admin", "ada", ["admin"])
    owner = glanceclient.Client("2", endpoint=keystone_server.url, token=owner_token)
    member = glanceclient.Client("2", endpoint=keystone_server.url, token=member_token)
    admin = glanceclient.Client("2", endpoint=keystone_server.url, token=admin_token)
    try:
        image = owner.images.create(name="ks", disk_format="raw", container_format="bare")
        assert image.owner == "ks-owner"
        owner.images.upload(image.id, io.BytesIO(b"keystone"))
        with pytest.raises(exc.HTTPNotFound):
            member.images.get(image.id)
        owner.image_members.create(image.id, "ks-member")
        assert b"".join(member.images.data(image.id)) == b"keystone"
        with pytest.raises(exc.HTTPForbidden):
            member.images.deactivate(image.id)  # another project: not its image
        owner.images.deactivate(image.id)  # a member of the owning project may (Glance 33)
        admin.images.reactivate(image.id)
        validations = keystone.validations
        for _ in range(5):
            owner.images.get(image.id)
        assert keystone.validations == validations  # the server cached the answer
        owner.images.delete(image.id)
    finally:
        for client in (owner, member, admin):
            client.http_client.session.close()


def test_keystone_refusals(keystone: FakeKeystone, keystone_server: ServerProcess) -> None:
    with httpx.Client(base_url=keystone_server.url) as http:
        assert http.get("/versions").status_code == 200
        for headers in ({}, {"X-Auth-Token": "never-issued"},
                        {"X-Project-Id": "p", "X-Roles": "admin"}):
            for path in ("/v2/images", "/v2/images/x/file"):
                r = http.get(path, headers=headers)
                assert r.status_code == 401
                assert r.headers["www-authenticate"] == f'Keystone uri="{keystone.url}"'
                assert "X-Auth-Token" in error_of(r)["message"]
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

"""streamd.auth without a server: the settings that choose a mode, the tokens file, and the
Keystone validator's cache, expiry and service-token renewal against the fake Keystone, with
an injected clock instead of sleeps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamd.auth import KeystoneTokens, load_tokens, open_authenticator
from streamd.config import ConfigError, Settings, load_settings
from streamd.errors import ServiceUnavailable, Unauthorized
from tests.fake_keystone import FakeKeystone

# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bind", ["0.0.0.0:9292", "[::]:9292", "192.0.2.7:9292",
                                  "images.example:9292"])
def test_noauth_refuses_a_non_loopback_bind(bind: str) -> None:
    with pytest.raises(ConfigError, match="noauth_allow_remote") as refused:
        load_settings(env={}, overrides={"bind": bind})
    assert "loopback" in str(refused.value) and bind in str(refused.value)


@pytest.mark.parametrize("bind", ["127.0.0.1:9292", "127.0.0.2:1", "[::1]:9292",
                                  "localhost:9292"])
def test_noauth_serves_loopback(bind: str) -> None:
    assert load_settings(env={}, overrides={"bind": bind}).auth == "noauth"


async def test_noauth_allowed_remote_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(env={"STREAMD_NOAUTH_ALLOW_REMOTE": "true"},
                             overrides={"bind": "0.0.0.0:9292"})
    with caplog.at_level(logging.WARNING, logger="streamd.auth"):
        async with open_authenticator(settings) as auth:
            assert auth.mode == "noauth"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "ANY project" in warning.message and "0.0.0.0:9292" in warning.message


@pytest.mark.parametrize(("overrides", "named"), [
    ({"auth": "tokens"}, "tokens_file"),
    ({"auth": "keystone"}, "keystone_url"),
    ({"auth": "keystone", "keystone_url": "http://k:5000"}, "keystone_service_token"),
    ({"auth": "keystone", "keystone_url": "http://k:5000", "keystone_service_user": "s"},
     "keystone_service_token"),
    ({"auth": "ldap"}, "auth"),
    ({"quota_image_count": -1}, "quota_image_count"),
    ({"protected_properties": "a*b"}, "protected_properties"),
])
def test_incomplete_auth_settings_are_named(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=f"setting '{named}'"):
        load_settings(env={}, overrides=overrides)


def test_quota_and_protection_settings_from_the_environment() -> None:
    settings = load_settings(env={"STREAMD_QUOTA_IMAGE_COUNT": "10",
                                  "STREAMD_QUOTA_IMAGE_SIZE_TOTAL": "unlimited",
                                  "STREAMD_PROTECTED_PROPERTIES": "x_billing_*, owner_note"})
    assert settings.quota_image_count == 10 and settings.quota_image_size_total is None
    assert settings.protected_properties == ("x_billing_*", "owner_note")


# -- tokens file -------------------------------------------------------------------------------


def test_tokens_file_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "tokens.toml"
    toml.write_text('[tokens.alice-secret]\nproject_id = "p1"\nuser_id = "alice"\n'
                    'roles = ["Member", "reader"]\n')
    [(token, ctx)] = load_tokens(toml).items()
    assert token == "alice-secret"
    assert (ctx.project_id, ctx.user_id, ctx.roles) == ("p1", "alice",
                                                        frozenset({"member", "reader"}))
    js = tmp_path / "tokens.json"
    js.write_text('{"tokens": {"admin-secret": {"project_id": "p0", "roles": ["admin"]}}}')
    assert load_tokens(js)["admin-secret"].is_admin


@pytest.mark.parametrize(("text", "words"), [
    ("[tokens.short]\nproject_id = 'p'\n", "at least 8"),
    ("[tokens.long-enough]\nuser_id = 'u'\n", "needs project_id"),
    ("[tokens.long-enough]\nproject_id = 'p'\nroles = 'admin'\n", "roles must be a list"),
    ("[tokens.long-enough]\nproject_id = 'p'\nrole = ['admin']\n", "unknown keys role"),
    ("tokens = 1\n", "expected a 'tokens' table"),
    ("[tokens\n", "not valid TOML"),
])
def test_bad_tokens_files_are_named(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as refused:
        load_tokens(path)
    assert str(path) in str(refused.value)
    with pytest.raises(ConfigError, match="No such file"):
        load_tokens(tmp_path / "missing.toml")


# -- keystone ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keystone() -> Iterator[FakeKeystone]:
    with FakeKeystone() as fake:
        fake.service_tokens.add("service-secret")
        fake.users[("streamd", "Default")] = ("streamd-password", "service", "service-id")
        yield fake


def keystone_settings(keystone: FakeKeystone, **values: object) -> Settings:
    return load_settings(env={}, overrides={
        "auth": "keystone", "keystone_url": keystone.url, "keystone_cache_ttl": 60, **values})


class HeaderMap(dict[str, str]):
    def get(self, name: str, default: None = None) -> str | None:  # type: ignore[override]
        return super().get(name, default)


async def test_keystone_validates_and_caches(keystone: FakeKeystone) -> None:
    clock = Clock()
    token = keystone.issue("p1", "alice", ["member", "reader"])
    async with httpx.AsyncClient() as client:
        auth = KeystoneTokens(keystone_settings(keystone, keystone_service_token="service-secret"),
                              client, clock)
        ctx = await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        assert (ctx.project_id, ctx.user_id, ctx.roles) == ("p1", "alice",
                                                            frozenset({"member", "reader"}))
        for _ in range(3):
            assert await auth.authenticate(HeaderMap({"X-Auth-Token": token})) == ctx
        assert keystone.validations == 1  # answered from the cache

        keystone.revoke(token)
        clock.now += 59  # still cached: a revoked token lives on for at most the TTL
        assert await auth.authenticate(HeaderMap({"X-Auth-Token": token})) == ctx
        clock.now += 2
        with pytest.raises(Unauthorized, match="not valid"):
            await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        assert keystone.validations == 2

        with pytest.raises(Unauthorized, match="Authentication required") as missing:
            await auth.authenticate(HeaderMap())
        assert missing.value.headers["WWW-Authenticate"].startswith("Keystone uri=")
        with pytest.raises(Unauthorized):
            await auth.authenticate(HeaderMap({"X-Auth-Token": "never-issued"}))


async def test_keystone_cache_never_outlives_the_token(keystone: FakeKeystone) -> None:
    clock = Clock()
    clock.now = time.time()  # the fake Keystone dates its tokens with the real clock
    async with httpx.AsyncClient() as client:
        auth = KeystoneTokens(keystone_settings(keystone, keystone_service_token="service-secret"),
                              client, clock)
        token = keystone.issue("p1", "alice", ["member"], expires_in=10)  # TTL: 60 s
        await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        clock.now += 9
        await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        assert keystone.validations == 1
        clock.now += 2  # past the token's expires_at: asked again, and refused
        with pytest.raises(Unauthorized):
            await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        assert keystone.validations == 2


async def test_keystone_password_service_token_is_renewed(keystone: FakeKeystone) -> None:
    token = keystone.issue("p1", "alice", ["member"])
    settings = keystone_settings(keystone, keystone_service_user="streamd",
                                 keystone_service_password="streamd-password",
                                 keystone_service_project="service")
    async with httpx.AsyncClient() as client:
        auth = KeystoneTokens(settings, client, Clock())
        await auth.authenticate(HeaderMap({"X-Auth-Token": token}))
        assert keystone.logins == 1
        for service_token in list(keystone.service_tokens):  # revoke streamd's own token
            if service_token != "service-secret":
                keystone.revoke(service_token)
        other = keystone.issue("p2", "bob", ["member"])
        assert (await auth.authenticate(HeaderMap({"X-Auth-Token": other}))).project_id == "p2"
        assert keystone.logins == 2


async def test_keystone_failures_are_503(keystone: FakeKeystone) -> None:
    token = keystone.issue("p1", "alice", ["member"])
    async with httpx.AsyncClient() as client:
        wrong = KeystoneTokens(keystone_settings(keystone, keystone_service_token="wrong"),
                               client, Clock())
        with pytest.raises(ServiceUnavailable, match="refused to validate"):
            await wrong.authenticate(HeaderMap({"X-Auth-Token": token}))
        bad_password = KeystoneTokens(keystone_settings(
            keystone, keystone_service_user="streamd", keystone_service_password="nope",
            keystone_service_project="service"), client, Clock())
        with pytest.raises(ServiceUnavailable, match="own credentials"):
            await bad_password.authenticate(HeaderMap({"X-Auth-Token": token}))
        keystone.down = True
        fine = KeystoneTokens(keystone_settings(keystone, keystone_service_token="service-secret"),
                              client, Clock())
        with pytest.raises(ServiceUnavailable):
            await fine.authenticate(HeaderMap({"X-Auth-Token": token}))
    gone = load_settings(env={}, overrides={"auth": "keystone",
                                             "keystone_url": "http://127.0.0.1:9",
                                             "keystone_service_token": "service-secret"})
    async with httpx.AsyncClient() as client:
        with pytest.raises(ServiceUnavailable, match="cannot be reached"):
            await KeystoneTokens(gone, client, Clock()).authenticate(
                HeaderMap({"X-Auth-Token": token}))

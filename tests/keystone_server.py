"""A real OpenStack Keystone for the tests and for ``./run interop``: installed, configured,
bootstrapped and served on loopback.

Keystone 30.0.0 (from PyPI) lives in a virtualenv of its own, ``.venv-keystone`` (created on
first use: it brings eventlet, oslo.* and webob, whose import-time warnings the test suite's
``filterwarnings = error`` would trip on, so it stays out of ``.venv``). ``KeystoneServer``
writes a ``keystone.conf`` (SQLite, fernet tokens, bcrypt at its cheapest rounds: tests
create many users), runs ``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup``
and ``bootstrap`` (admin user, project and roles admin > member > reader, the identity
endpoint), and serves Keystone with gunicorn, one sync worker (more give SQLite "database is
locked" 500s). Then it creates what a test asks for through Keystone's own API: projects,
users with roles, tokens, the image service in the catalog.

    .venv/bin/python -m tests.keystone_server DIR   # serve one until interrupted
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEYSTONE_VENV = Path(os.environ.get("STREAMD_KEYSTONE_VENV", ROOT / ".venv-keystone"))
KEYSTONE_REQUIREMENTS = ("keystone==30.0.0", "gunicorn==27.0.1")
ADMIN_PASSWORD = "streamd-keystone-admin"  # a loopback test cloud's, never a real one's
SERVICE_PROJECT = "service"
START_TIMEOUT = 90.0  # seconds: Keystone's first start imports a lot


def ensure_keystone_venv(venv: Path = KEYSTONE_VENV) -> Path:
    """``venv`` with Keystone and gunicorn installed (once; a stamp file says it was)."""
    stamp = venv / (".streamd-" + "-".join(KEYSTONE_REQUIREMENTS).replace("==", "-"))
    if stamp.exists():
        return venv
    # the test processes (pytest-xdist) each start a Keystone: one installs, the others
    # wait for it here (two pips in one venv at once broke each other on a fresh clone)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _install_keystone(venv, stamp)
    return venv


def _install_keystone(venv: Path, stamp: Path) -> None:
    python = shutil.which("python3") or sys.executable
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    for args in (["-U", "pip", "wheel"], list(KEYSTONE_REQUIREMENTS)):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(args)} into {venv} failed:\n"
                               f"{done.stderr[-3000:]}")
    stamp.touch()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """\
[DEFAULT]
log_file = {root}/keystone.log
use_stderr = false

[database]
connection = sqlite:///{root}/keystone.sqlite

[token]
provider = fernet
expiration = 7200

[fernet_tokens]
key_repository = {root}/fernet-keys

[fernet_receipts]
key_repository = {root}/fernet-receipts

[credential]
key_repository = {root}/credential-keys

[identity]
# bcrypt's cheapest: the tests (and tempest's dynamic credentials) create many users
password_hash_rounds = 4
"""


@dataclass
class User:
    """A Keystone user with a project-scoped token."""

    name: str
    user_id: str
    project_id: str
    token: str
    password: str


@dataclass
class KeystoneServer:
    """A bootstrapped Keystone under gunicorn on 127.0.0.1; ``url`` is its base URL."""

    root: Path
    port: int = field(default_factory=_free_port)
    venv: Path = KEYSTONE_VENV
    proc: subprocess.Popen[bytes] | None = None
    _admin_token: str | None = None
    _projects: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.root / "keystone.conf"

    def start(self) -> KeystoneServer:
        venv = ensure_keystone_venv(self.venv)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(CONFIG.format(root=self.root))
        manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(self.config_file)]
        user, group = _user_and_group()
        # the database and the two key repositories are independent: set them up side by
        # side (each keystone-manage spends seconds importing), then bootstrap
        _manage_all(manage, [
            ["db_sync"],
            ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
            ["credential_setup", "--keystone-user", user, "--keystone-group", group]])
        _manage_all(manage, [
            ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
             "--bootstrap-admin-url", f"{self.url}/v3",
             "--bootstrap-internal-url", f"{self.url}/v3",
             "--bootstrap-public-url", f"{self.url}/v3",
             "--bootstrap-region-id", "RegionOne"]])
        # Keystone's WSGI module parses sys.argv with oslo.config: gunicorn's would not do
        (self.root / "keystone_wsgi.py").write_text(
            "import sys\nsys.argv = sys.argv[:1]\n"
            "from keystone.wsgi.api import application  # noqa: E402,F401\n")
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.config_file)}
        log = open(self.root / "gunicorn.log", "ab")  # noqa: SIM115  (the process keeps it)
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--timeout", "300", "--chdir", str(self.root),
             "keystone_wsgi:application"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Keystone exited with {self.proc.returncode}:\n"
                                   f"{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v3", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Keystone did not answer within {START_TIMEOUT}s")
            time.sleep(0.2)
        self._admin_token = self.password_token("admin", ADMIN_PASSWORD, "admin")
        self.ensure_role("service")
        return self

    def log(self) -> str:
        parts = [self.root / "gunicorn.log", self.root / "keystone.log"]
        return "".join(p.read_text(errors="replace") for p in parts if p.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> KeystoneServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Keystone's API -----------------------------------------------------------------------

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None,
             expect: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        headers = {"X-Auth-Token": self._admin_token or ""}
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=60)
        if r.status_code not in expect:
            raise RuntimeError(f"Keystone {method} {path}: {r.status_code} {r.text[:500]}")
        return r

    def password_token(self, user: str, password: str, project: str) -> str:
        """A project-scoped token for ``user`` (domain Default) by password."""
        domain = {"id": "default"}
        r = httpx.post(f"{self.url}/v3/auth/tokens", timeout=60, json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": domain, "password": password}}},
            "scope": {"project": {"name": project, "domain": domain}}}})
        if r.status_code != 201:
            raise RuntimeError(f"Keystone refused {user}'s password: {r.status_code} {r.text}")
        return r.headers["X-Subject-Token"]

    def ensure_role(self, name: str) -> str:
        found = self._api("GET", f"/v3/roles?name={name}").json()["roles"]
        if found:
            return found[0]["id"]
        return self._api("POST", "/v3/roles", {"role": {"name": name}}).json()["role"]["id"]

    def project(self, name: str) -> str:
        """The id of project ``name`` (domain Default), created if missing."""
        if name not in self._projects:
            found = self._api("GET", f"/v3/projects?name={name}").json()["projects"]
            self._projects[name] = found[0]["id"] if found else self._api(
                "POST", "/v3/projects", {"project": {"name": name, "domain_id": "default"}}
            ).json()["project"]["id"]
        return self._projects[name]

    def user(self, project: str, name: str, roles: list[str],
             password: str | None = None) -> User:
        """A new user ``name`` with ``roles`` on ``project`` (created if missing), and its
        token. Keystone expands implied roles: ``member`` also gives ``reader``."""
        password = password or uuid.uuid4().hex
        project_id = self.project(project)
        user_id = self._api("POST", "/v3/users", {"user": {
            "name": name, "password": password, "domain_id": "default",
            "default_project_id": project_id}}).json()["user"]["id"]
        for role in roles:
            role_id = self.ensure_role(role)
            self._api("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}")
        return User(name, user_id, project_id, self.password_token(name, password, project),
                    password)

    def revoke(self, token: str) -> None:
        r = httpx.delete(f"{self.url}/v3/auth/tokens", timeout=60, headers={
            "X-Auth-Token": self._admin_token or "", "X-Subject-Token": token})
        if r.status_code != 204:
            raise RuntimeError(f"Keystone did not revoke the token: {r.status_code} {r.text}")

    def register_image_service(self, url: str, name: str = "glance") -> None:
        """The image service at ``url`` in the catalog (public, internal, admin)."""
        service_id = self._api("POST", "/v3/services", {"service": {
            "name": name, "type": "image", "enabled": True}}).json()["service"]["id"]
        for interface in ("public", "internal", "admin"):
            self._api("POST", "/v3/endpoints", {"endpoint": {
                "service_id": service_id, "interface": interface, "url": url,
                "region_id": "RegionOne", "enabled": True}})


def _manage_all(manage: list[str], steps: list[list[str]]) -> None:
    """Run ``keystone-manage`` steps at once and wait for all; the first failure is raised."""
    runs = []
    for step in steps:
        err = tempfile.TemporaryFile()  # noqa: SIM115  (closed below)
        runs.append((step[0], err, subprocess.Popen([*manage, *step], stdout=subprocess.DEVNULL,
                                                    stderr=err)))
    failures = []
    for name, err, proc in runs:
        if proc.wait() != 0:
            err.seek(0)
            failures.append(f"keystone-manage {name} failed:\n"
                            f"{err.read().decode(errors='replace')[-3000:]}")
        err.close()
    if failures:
        raise RuntimeError(failures[0])


def _user_and_group() -> tuple[str, str]:
    import grp
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "keystone-data").resolve()
    with KeystoneServer(root) as keystone:
        print(f"Keystone on {keystone.url} (admin / {ADMIN_PASSWORD}); Ctrl-C stops it",
              flush=True)
        try:
            keystone.proc.wait()  # type: ignore[union-attr]
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

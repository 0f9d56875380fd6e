"""The ``openstack image …`` commands (python-openstackclient) against a real streamd, as the
README shows them: keystone-less (``--os-auth-type none``) and with a static token
(``auth = "tokens"``; ``--os-token``, keystoneauth's token plugin), each with the endpoint
as given to users (``http://host:9292``) and with ``/v2``.

The CLI takes 1-2 s (more on a busy machine) to start, so each case runs its commands in
one process: ``openstack`` with no command reads commands from stdin (cliff's interactive
mode); the options come from the ``OS_*`` environment variables that the ``--os-*`` flags
stand for (``OS_AUTH_TYPE=admin_token`` is what ``--os-token`` selects). One literal
``--os-token … --os-endpoint http://host:port`` call checks the flags themselves.
Metadefs commands are covered in tests/test_metadefs_clients.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess

OPENSTACK = str(Path(sys.executable).with_name("openstack"))
TOKEN = "openstack-cli-token-0123456789"
PROJECT = "cli-project"
MEMBER = "cli-member-project"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """A noauth server and a tokens server for the module."""
    root = tmp_path_factory.mktemp("openstack-cli")
    tokens = root / "tokens.toml"
    tokens.write_text(f'[tokens.{TOKEN}]\nproject_id = "{PROJECT}"\nuser_id = "cli"\n'
                      'roles = ["admin", "member", "reader"]\n')
    noauth = ServerProcess(data_dir=root / "noauth")
    with_tokens = ServerProcess(data_dir=root / "tokens", env={
        "STREAMD_AUTH": "tokens", "STREAMD_TOKENS_FILE": str(tokens)})
    with noauth, with_tokens:
        yield {"none": noauth, "tokens": with_tokens}


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 MiB: data, a hole, data."""
    path = tmp_path_factory.mktemp("disk") / "disk.raw"
    with open(path, "wb") as f:
        f.write(b"streamd!" * (MiB // 8))
        f.seek(2 * MiB)
        f.write(b"tail" * (MiB // 4))
    return path


def _environment(mode: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_ENDPOINT": endpoint, "OS_IMAGE_API_VERSION": "2"})
    if mode == "none":
        env["OS_AUTH_TYPE"] = "none"
    else:
        env.update({"OS_AUTH_TYPE": "admin_token", "OS_TOKEN": TOKEN})
    return env


def _run(commands: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([OPENSTACK], input="\n".join(commands) + "\n", env=env,
                          capture_output=True, text=True, timeout=180)
    # the interactive mode exits 1 at the end of its input whatever happened, and reports
    # each command's error on stderr
    assert not done.stderr.strip(), done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", ["none", "tokens"])
@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "v2"])
def test_openstack_image_commands(servers: dict[str, ServerProcess], disk: Path,
                                  tmp_path: Path, mode: str, versioned: bool) -> None:
    server = servers[mode]
    endpoint = server.url + ("/v2" if versioned else "")
    name = f"cli-{mode}-{'v2' if versioned else 'bare'}"
    saved = tmp_path / "saved.raw"
    headers = {"X-Auth-Token": TOKEN} if mode == "tokens" else {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        # queued images made with the API: `image create` without --file reads the data
        # from a stdin that is not a terminal (here, the commands)
        for suffix in ("staged", "gone"):
            r = client.post("/v2/images", json={"name": f"{name}-{suffix}",
                                                "disk_format": "raw",
                                                "container_format": "bare"})
            assert r.status_code == 201, r.text
        # `image add project` looks the project up in Keystone (README): with the API
        members = client.post(f"/v2/images/{r.json()['id']}/members", json={"member": MEMBER})
        assert members.status_code == 200, members.text
        out = _run([
            f"image create --disk-format raw --container-format bare --file {disk} "
            f"--property color=blue --property keep=1 --tag t1 {name} -f value -c status",
            "image list -f value -c Name",
            f"image show {name} -f value -c size",
            f"image set --property color=green --tag t2 --min-disk 2 {name}",
            f"image unset --property color --tag t1 {name}",
            f"image save --file {saved} {name}",
            f"image member list {name}-gone -f value",
            f"image member get {name}-gone {MEMBER} -f value -c status",
            f"image stage --file {disk} {name}-staged",
            f"image import --method glance-direct {name}-staged -f value -c status",
            "image task list -f value -c Type",
            f"image delete {name}-gone",
        ], _environment(mode, endpoint))
        lines = out.split()
        assert lines[:1] == ["active"]  # create --file
        assert name in lines and f"{name}-staged" in lines  # list
        assert str(disk.stat().st_size) in lines  # show
        assert MEMBER in lines and "pending" in lines  # member list, member get
        assert "api_image_import" in lines  # task list
        assert saved.read_bytes() == disk.read_bytes()  # save

        (image,) = client.get("/v2/images", params={"name": name}).json()["images"]
        assert (image["keep"], image["tags"], image["min_disk"]) == ("1", ["t2"], 2)
        assert "color" not in image
        staged = client.get("/v2/images", params={"name": f"{name}-staged"}).json()["images"]
        assert staged[0]["status"] in ("importing", "active")
        assert client.get("/v2/images", params={"name": f"{name}-gone"}).json()["images"] == []
        if mode == "tokens":
            assert image["owner"] == PROJECT

def test_the_os_token_and_os_endpoint_flags(servers: dict[str, ServerProcess]) -> None:
    """The flags themselves, on the unversioned endpoint: keystoneauth's token plugin sends
    ``GET /images`` there (Glance answers its version list, 300, and the CLI fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    done = subprocess.run([OPENSTACK, "--os-token", TOKEN, "--os-endpoint",
                           servers["tokens"].url, "image", "list", "-f", "value", "-c", "Name"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cli-tokens-bare" in done.stdout.split()

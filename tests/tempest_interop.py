"""``./run interop``: OpenStack's own verdict on streamd — tempest's image API tests
(``tempest.api.image``), run as a cloud operator would run them.

What it does, every step by the project's own code:

1. installs Keystone 30.0.0 (``.venv-keystone``, ``tests/keystone_server.py``) and tempest
   47.0.0 (``.venv-tempest``) on first use;
2. starts Keystone (SQLite, fernet, one gunicorn worker) and bootstraps it;
3. starts streamd in ``auth = keystone`` mode with a service user of its own (role
   ``service``), and registers it in the catalog as the image service;
4. loads metadata definitions (``tests/data/metadefs``) with ``streamd metadefs load``;
5. serves tempest's ``http_image`` and ``http_qcow2_image`` (qcow2 images, which is what
   tempest labels them) from a web server on loopback (no network here): streamd may
   web-download from it (``web_download_private_hosts = 127.0.0.1`` and its port), as an
   operator allows a local mirror;
6. writes ``tempest.conf`` from what streamd offers (``/v2/info/import``, ``/v2/info/stores``;
   see ``FEATURES``: every skip tempest makes is for a reason stated there);
7. runs ``tempest run --regex '^tempest\\.api\\.image' --concurrency 2`` and exits with its
   status, after a closing line ``N passed, N failed, N skipped``.

    .venv/bin/python -m tests.tempest_interop [--keep DIR] [--regex REGEX]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.disk_images import qcow2
from tests.keystone_server import ADMIN_PASSWORD, ROOT, KeystoneServer, ensure_keystone_venv
from tests.servers import ServerProcess

TEMPEST_VENV = Path(os.environ.get("STREAMD_TEMPEST_VENV", ROOT / ".venv-tempest"))
TEMPEST_REQUIREMENT = "tempest==47.0.0"
REGEX = r"^tempest\.api\.image"
CONCURRENCY = 2
METADEFS = ROOT / "tests" / "data" / "metadefs"

# The stores and features this run offers tempest: every kind of store streamd has that
# needs no other service (two file stores, so that multi-store and copy-image run; the
# read-only http store for locations), the locations API, and the cache.
STREAMD_CONFIG = """\
default_store = "local"
show_multiple_locations = true

[stores.local]
type = "file"
path = "{root}/local"
description = "first file store"
cached = true  # the read-through cache in front of it (as on NFS), for the cache API tests

[stores.second]
type = "file"
path = "{root}/second"
description = "second file store"

[stores.web]
type = "http"
"""

# What streamd offers that tempest cannot ask for itself, and why each setting is what it
# is. Every test tempest skips is skipped for one of these reasons (README: "Interop").
FEATURES = """\
[image-feature-enabled]
# streamd's import (glance-direct, web-download; copy-image once several stores exist)
import_image = true
os_glance_reserved = true
# format inspection (oslo.utils' format_inspector, as Glance 33): bad images are refused
image_format_enforcement = true
# os_hash_value is computed on every upload, as Glance's do_secure_hash
do_secure_hash = true
# skips LocationImportTest, MultistoreLocationImportTest, HashCalculationRemoteDeletionTest:
# the first two expect Glance bug 2076648 (an image whose location failed its hash check goes
# back to queued *keeping* the location, stores "web"); streamd drops the location. (With
# true, HashCalculationRemoteDeletionTest passes and those two fail only on that check.)
http_store_enabled = false
# skips the tests of several locations per image through PATCH: streamd keeps one location
# per store and no per-location metadata (see the README)
manage_locations = false
# skips the conversion tests: streamd does not convert images (Glance's image_conversion)
image_conversion = false
# skips the store-weight tests: streamd has no store weights
store_weight_enabled = false

[image]
# the read-through cache and Glance's cache API (/v2/cache); its test of a remote node skips
# (no alternate_image_endpoint, below)
image_caching_enabled = true
# skips the cross-node tests: one streamd in this run (no alternate_image_endpoint)
# skips test_images_formats: no images_manifest_file (os-test-images is not installed)
hashing_algorithm = sha512
build_timeout = 60
"""


def ensure_tempest_venv(venv: Path = TEMPEST_VENV) -> Path:
    stamp = venv / f".streamd-{TEMPEST_REQUIREMENT.replace('==', '-')}"
    if stamp.exists():
        return venv
    if not (venv / "bin" / "python").exists():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)],
                       check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    for args in (["-U", "pip", "wheel"], [TEMPEST_REQUIREMENT]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(args)} into {venv} failed:\n"
                               f"{done.stderr[-3000:]}")
    stamp.touch()
    return venv


def tempest_conf(keystone: KeystoneServer, streamd_url: str, http_image: str,
                 http_qcow2_image: str) -> str:
    """tempest.conf: dynamic credentials from Keystone's admin, only glance available, and
    what streamd says it offers."""
    methods = httpx.get(f"{streamd_url}/v2/info/import", headers=_admin_headers(keystone),
                        timeout=30).json()["import-methods"]["value"]
    stores = httpx.get(f"{streamd_url}/v2/info/stores", headers=_admin_headers(keystone),
                       timeout=30).json()["stores"]
    return f"""\
# written by tests/tempest_interop.py for {streamd_url}: import methods {methods},
# stores {[s['id'] for s in stores]}
[DEFAULT]
log_file = tempest.log

[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = {ADMIN_PASSWORD}
admin_project_name = admin
admin_domain_name = Default
tempest_roles = member

[identity]
uri_v3 = {keystone.url}/v3
auth_version = v3
region = RegionOne
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false

[service_available]
glance = true
nova = false
cinder = false
neutron = false
swift = false

{FEATURES}
http_image = {http_image}
http_qcow2_image = {http_qcow2_image}
"""


@contextlib.contextmanager
def _file_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on loopback (GET and HEAD, as often as asked): the URL."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _admin_headers(keystone: KeystoneServer) -> dict[str, str]:
    return {"X-Auth-Token": keystone.password_token("admin", ADMIN_PASSWORD, "admin")}


def run(root: Path, regex: str) -> int:
    ensure_keystone_venv()
    venv = ensure_tempest_venv()
    files = root / "http-images"
    files.mkdir(parents=True, exist_ok=True)
    # tempest gives both to images it creates with disk_format qcow2 (its first), and
    # streamd inspects what a location or a web-download holds: they are qcow2 images
    (files / "cirros-location.qcow2").write_bytes(qcow2(32 * 1024 * 1024))
    (files / "cirros-disk.img").write_bytes(qcow2(64 * 1024 * 1024))
    with KeystoneServer(root / "keystone") as keystone, _file_server(files) as web:
        service = keystone.user("service", f"streamd-{uuid.uuid4().hex[:6]}", ["service"])
        env = {"STREAMD_AUTH": "keystone", "STREAMD_KEYSTONE_URL": keystone.url,
               "STREAMD_KEYSTONE_SERVICE_USER": service.name,
               "STREAMD_KEYSTONE_SERVICE_PASSWORD": service.password,
               "STREAMD_KEYSTONE_SERVICE_PROJECT": "service",
               "STREAMD_KEYSTONE_SERVICE_DOMAIN": "Default",
               "STREAMD_WEB_DOWNLOAD_PRIVATE_HOSTS": "127.0.0.1",
               "STREAMD_WEB_DOWNLOAD_ALLOWED_PORTS": f"80,443,{web.rsplit(':', 1)[1]}"}
        data_dir = root / "streamd" / "data"
        config = root / "streamd" / "streamd.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(STREAMD_CONFIG.format(root=root / "streamd"))
        env["STREAMD_CONFIG"] = str(config)
        # a cloud has metadata definitions loaded (Glance's come with its packages; the
        # metadefs tests need a resource type): the ones this project ships for its tests
        subprocess.run([sys.executable, "-m", "streamd", "metadefs", "load", "--data-dir",
                        str(data_dir), str(METADEFS)], check=True, capture_output=True)
        with ServerProcess(data_dir=data_dir, env=env) as streamd:
            keystone.register_image_service(streamd.url)
            workspace = root / "tempest"
            if not (workspace / ".stestr.conf").exists():
                # its own workspace registry: nothing is written to ~/.tempest
                done = subprocess.run(
                    [str(venv / "bin" / "tempest"), "init", "--workspace-path",
                     str(root / "workspace.yaml"), str(workspace)],
                    capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"tempest init failed:\n{done.stderr[-3000:]}")
            (workspace / "etc" / "tempest.conf").write_text(tempest_conf(
                keystone, streamd.url, f"{web}/cirros-location.qcow2",
                f"{web}/cirros-disk.img"))
            print(f"tempest {regex} on streamd {streamd.url} (Keystone {keystone.url}); "
                  f"logs in {root}", flush=True)
            done = subprocess.run(
                [str(venv / "bin" / "tempest"), "run", "--regex", regex,
                 "--concurrency", str(CONCURRENCY)],
                cwd=workspace, capture_output=True, text=True)
            (root / "tempest-run.log").write_text(done.stdout + done.stderr)
            print(_summary(done.stdout), flush=True)
            return done.returncode


def _summary(output: str) -> str:
    """tempest's list of failures and its totals, then one line pytest-like runners read."""
    lines = [line for line in output.splitlines()
             if re.match(r"\{\d+\} .*\.\.\. (FAILED|SKIPPED)", line)
             or line.startswith((" - Passed", " - Skipped", " - Failed", " - Expected",
                                 " - Unexpected", "Sum of execute", "=", "Totals"))]
    counts = {name: int(n) for name, n in re.findall(
        r" - (Passed|Skipped|Failed): (\d+)", output)}
    lines.append(f"{counts.get('Passed', 0)} passed, {counts.get('Failed', 0)} failed, "
                 f"{counts.get('Skipped', 0)} skipped")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a "
                                                  "temporary directory, removed after)")
    parser.add_argument("--regex", default=REGEX)
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args.keep.resolve(), args.regex))
    with tempfile.TemporaryDirectory(prefix="streamd-interop-") as tmp:
        code = run(Path(tmp), args.regex)
        if code != 0:
            print((Path(tmp) / "tempest-run.log").read_text()[-20000:])
    sys.exit(code)


if __name__ == "__main__":
    main()

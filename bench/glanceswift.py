"""A second Glance 33, its images in Swift: the peer of streamd's Swift store.

The peer Glance of ``../shared/peers/glance`` (usually on 127.0.0.1:9393, file stores) is
left alone. This one runs from the same venv (``~/.cache/streamd-peers/glance-venv``, or
``$ANCHOR/glance-venv``) under its own uWSGI on its own port, with a config written here at
run time into the session's temp dir: ``enabled_backends = swift1:swift`` (glance_store's
swift driver, single tenant, one container, created on the first PUT; images past
``segment_size`` as Glance's dynamic large objects of that segment size), its own SQLite
database, the peer's image cache (paste flavor ``trusted-headers+caching``, the
centralized_db driver, 10 GiB; ``cache=False``: flavor ``trusted-headers``, every download
reads Swift) and the same keystone-less, header-trusting pipeline as the peer.

glance_store 5.x authenticates to Swift with Keystone v3 only; the project's Swift speaks
tempauth, so ``swift_store_auth_address`` points at ``bench.keystonebridge`` (Keystone v3
passwords in, tempauth tokens out) and ``swift_store_endpoint`` at Swift's storage URL.
The driver needs python-swiftclient in Glance's venv: it is installed there with that venv's
pip when missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.targets import Target, http_status

ANCHOR = Path(os.environ.get("ANCHOR", Path.home() / ".cache" / "streamd-peers"))
GLANCE_VENV = ANCHOR / "glance-venv"
START_TIMEOUT = 120.0  # seconds for GET / to answer (uWSGI imports all of Glance per worker)
STOP_TIMEOUT = 30.0
PROCESSES = 2  # uWSGI workers, as the peer Glance (setup.sh's GLANCE_UWSGI_PROCESSES)
MiB = 1024 * 1024
GLANCE_MB = 1000 * 1024  # glance_store's ONE_MB (units.k * units.Ki) for the swift sizes
# glance_store's own default: an image up to 5 GiB is one Swift object. Below it, a known-size
# upload whose size is not a multiple of the segment hangs in glance_store 5.7.0 (see README)
DEFAULT_LARGE_OBJECT_SIZE = 5120 * GLANCE_MB

_API_CONF = """\
[DEFAULT]
debug = false
use_stderr = true
enabled_backends = swift1:swift
enabled_import_methods = [glance-direct,web-download,copy-image]
worker_self_reference_url = {url}
public_endpoint = {url}
show_image_direct_url = false
show_multiple_locations = false
lock_path = {home}/lock
{cache_conf}
[glance_store]
default_backend = swift1

[swift1]
store_description = Swift (bench: the same Swift as streamd's swift store)
swift_store_auth_address = {auth_url}
swift_store_user = {user}
swift_store_key = {key}
swift_store_endpoint = {storage_url}
swift_store_container = {container}
swift_store_create_container_on_put = true
# in glance_store's "MB" (1,024,000 bytes): past large_object_size an image becomes a dynamic
# large object of chunk_size segments
swift_store_large_object_size = {large_object_mb}
swift_store_large_object_chunk_size = {segment_mb}

[os_glance_staging_store]
filesystem_store_datadir = {home}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {home}/tasks

[database]
connection = sqlite:///{home}/glance.sqlite

[paste_deploy]
flavor = {flavor}
config_file = {home}/etc/glance-api-paste.ini

[task]
work_dir = {home}/tasks

[oslo_concurrency]
lock_path = {home}/lock

[wsgi]
task_pool_threads = 16
python_interpreter = {venv}/bin/python
"""

_UWSGI_INI = """\
[uwsgi]
module = glance.wsgi.api:application
env = OS_GLANCE_CONFIG_DIR={home}/etc
http-socket = 127.0.0.1:{port}
master = true
processes = {processes}
threads = 1
enable-threads = true
lazy-apps = true
py-sys-executable = {venv}/bin/python
need-app = true
die-on-term = true
exit-on-reload = false
thunder-lock = true
buffer-size = 65535
add-header = Connection: close
http-chunked-input = true
chunked-input-limit = 16777216
http-auto-chunked = true
http-raw-body = true
socket-timeout = 60
worker-reload-mercy = 30
hook-master-start = unix_signal:15 gracefully_kill_them_all
pidfile = {home}/uwsgi.pid
"""

# the header-trusting pipelines of setup.sh (no authtoken; without and with the image cache's
# filter), added to the wheel's paste
FLAVOR, CACHE_FLAVOR = "trusted-headers", "trusted-headers+caching"
_COMPOSITE = ("[composite:glance-api-{flavor}]\n"
              "paste.composite_factory = glance.api:root_app_factory\n"
              "/: api\n/healthcheck: healthcheck\n\n")
_PIPELINES = (f"{FLAVOR} = cors http_proxy_to_wsgi versionnegotiation osprofiler context "
              "rootapp\n"
              f"{CACHE_FLAVOR} = cors http_proxy_to_wsgi versionnegotiation osprofiler context "
              "cache rootapp\n")
# the peer's image cache (setup.sh): the centralized_db driver needs worker_self_reference_url
_CACHE_CONF = """\
image_cache_dir = {home}/cache
image_cache_driver = centralized_db
image_cache_max_size = 10737418240
"""


def glance_missing(venv: Path = GLANCE_VENV) -> str | None:
    """Why a Glance cannot be started from ``venv`` (None: it can)."""
    if not (venv / "bin" / "uwsgi").exists() or not (venv / "bin" / "glance-manage").exists():
        return (f"no Glance venv with uWSGI at {venv}: run ../shared/peers/glance/setup.sh "
                "(see bench/README.md)")
    return None


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class GlanceSwift:
    """glance-api under uWSGI on ``port`` with a swift store; state under ``home``."""

    name = "glance-swift"

    def __init__(self, home: Path, port: int, *, auth_url: str, storage_url: str, user: str,
                 key: str, container: str, segment_size: int,
                 large_object_size: int = DEFAULT_LARGE_OBJECT_SIZE,
                 venv: Path = GLANCE_VENV, cache: bool = True,
                 processes: int = PROCESSES) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.venv = venv
        self.cache = cache
        self.processes = processes  # uWSGI workers of 1 thread: requests served at once
        self.settings = {"auth_url": auth_url, "storage_url": storage_url, "user": user,
                         "key": key, "container": container,
                         "segment_mb": max(1, segment_size // GLANCE_MB),
                         "large_object_mb": max(1, large_object_size // GLANCE_MB)}
        self.log_path = home / "api.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.notes: list[str] = []

    # -- set-up ------------------------------------------------------------------------
    def ensure_swiftclient(self) -> None:
        """glance_store's swift driver imports swiftclient; pip-install it when missing."""
        py = str(self.venv / "bin" / "python")
        if subprocess.run([py, "-c", "import swiftclient"], capture_output=True).returncode == 0:
            return
        print(f"bench: installing python-swiftclient into {self.venv}", flush=True)
        done = subprocess.run([py, "-m", "pip", "install", "-q", "python-swiftclient"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip install python-swiftclient into {self.venv} failed:\n"
                               + done.stderr[-2000:])
        self.notes.append(f"python-swiftclient was installed into {self.venv} for glance_store's "
                          "swift driver")

    def write_config(self) -> None:
        etc = self.home / "etc"
        for d in (etc, self.home / "staging", self.home / "tasks", self.home / "lock",
                  self.home / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        fmt = {**self.settings, "home": self.home, "url": self.url, "venv": self.venv,
               "port": self.port, "processes": self.processes,
               "flavor": CACHE_FLAVOR if self.cache else FLAVOR,
               "cache_conf": _CACHE_CONF.format(home=self.home) if self.cache else ""}
        (etc / "glance-api.conf").write_text(_API_CONF.format(**fmt))
        (etc / "uwsgi.ini").write_text(_UWSGI_INI.format(**fmt))
        paste = (self.venv / "etc" / "glance" / "glance-api-paste.ini").read_text()
        anchor = "[composite:api]\n"
        last_pipeline = next(line for line in paste.splitlines(keepends=True)
                             if line.startswith("keystone+cachemanagement = "))
        if anchor not in paste:
            raise RuntimeError("Glance's glance-api-paste.ini has no [composite:api]")
        composites = "".join(_COMPOSITE.format(flavor=f) for f in (FLAVOR, CACHE_FLAVOR))
        paste = paste.replace(anchor, composites + anchor)
        paste = paste.replace(last_pipeline, last_pipeline + _PIPELINES)
        paste = paste.replace("disable_by_file_path = /etc/glance/healthcheck_disable",
                              f"disable_by_file_path = {self.home}/healthcheck_disable")
        (etc / "glance-api-paste.ini").write_text(paste)

    def db_sync(self) -> None:
        etc = self.home / "etc"
        env = {**os.environ, "OS_GLANCE_CONFIG_DIR": str(etc)}
        done = subprocess.run([str(self.venv / "bin" / "glance-manage"), "--config-file",
                               str(etc / "glance-api.conf"), "db_sync"],
                              env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError("glance-manage db_sync failed:\n" + done.stderr[-3000:])

    def start(self) -> GlanceSwift:
        why = glance_missing(self.venv)
        if why:
            raise RuntimeError(why)
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is in use (choose --glance-swift-port)")
        self.ensure_swiftclient()
        self.write_config()
        self.db_sync()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "uwsgi"), "--ini", str(self.home / "etc" / "uwsgi.ini")],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uWSGI exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            if http_status(self.url + "/", timeout=1.0) in (200, 300):
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Glance on Swift did not answer GET / within {START_TIMEOUT:.0f} s:\n"
                           + self.log_tail())

    def stop(self) -> None:
        """SIGTERM to the uWSGI master (it stops its workers), SIGKILL to the group if stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def target(self) -> Target:
        """Keystone-less Glance: it trusts the identity headers keystonemiddleware would set."""
        return Target(self.name, self.url, self.pid,
                      extra_headers={"X-Identity-Status": "Confirmed"},
                      os_hash_algo="sha512", purge_cache=self.cache, setup_concurrency=1,
                      transfers_only=True)

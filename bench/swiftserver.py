"""A single-node OpenStack Swift on loopback (Swift API + S3 API), for the tests and the bench.

``SwiftServer`` is a "Swift all in one" written by the project: Debian's Swift
(``apt-get install swift swift-proxy swift-object swift-container swift-account memcached``;
``.ci/run`` installs them when missing) with tempauth and the s3api middleware, rings of one
replica on a plain directory under ``base``, every server on a free loopback port. It starts
in ~4 s and is torn down (process groups killed) when the block ends.

The tests import it through ``tests/objectstores.py``; ``python -m bench --swift`` measures
streamd and Glance against it (``bench/swiftgroup.py``). It lives in ``bench`` so that the
bench does not import the tests, and needs nothing but httpx.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.swiftlog import TEMPLATE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SWIFT_PACKAGES = "swift swift-proxy swift-object swift-container swift-account memcached"
SWIFT_COMMANDS = ("swift-proxy-server", "swift-object-server", "swift-container-server",
                  "swift-account-server", "memcached")
# Debian's Swift is a module of the system interpreter, not of the test venv
SYSTEM_PYTHON = "/usr/bin/python3"

SWIFT_USER, SWIFT_KEY = "test:tester", "testing"


def swift_missing() -> str | None:
    """Why a Swift cannot be started here (None: it can)."""
    missing = [c for c in SWIFT_COMMANDS if shutil.which(c) is None]
    if missing:
        return (f"OpenStack Swift is not installed ({', '.join(missing)} missing): "
                f"apt-get install -y --no-install-recommends {SWIFT_PACKAGES}")
    return None


_SWIFT_CONF = """\
[swift-hash]
swift_hash_path_prefix = streamd-test-prefix
swift_hash_path_suffix = streamd-test-suffix

[storage-policy:0]
name = gold
default = yes

[swift-constraints]
max_file_size = {max_file_size}
"""

_BACKEND_CONF = """\
[DEFAULT]
swift_dir = {etc}
devices = {devices}
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
log_level = WARNING
log_address = /nonexistent-dev-log

[pipeline:main]
pipeline = healthcheck {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[filter:healthcheck]
use = egg:swift#healthcheck
"""

_PROXY_CONF = """\
[DEFAULT]
swift_dir = {etc}
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
log_level = WARNING
log_address = /nonexistent-dev-log

[pipeline:main]
# s3api before tempauth; slo also carries S3 multipart uploads
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api
    tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
# seconds the proxy waits on the object server; Swift's 10 let 2-4 of 8 concurrent 1 GiB
# PUTs answer 503 after ~12 s here (one object server fsyncing them all on this disk)
node_timeout = 60

[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
s3_acl = false
check_bucket_owner = false
allow_multipart_uploads = true
min_segment_size = {min_segment_size}

[filter:slo]
use = egg:swift#slo
min_segment_size = {min_segment_size}

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcache_port}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
{access_log}[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
"""

_BUILD_RINGS = """
import os, sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(("object", "container", "account"), map(int, sys.argv[2:5])):
    b = RingBuilder(8, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
               "device": "d1", "weight": 1, "meta": ""})
    b.rebalance()
    b.get_ring().save(os.path.join(etc, name + ".ring.gz"))
"""


@dataclass
class SwiftServer:
    """A single-node Swift under ``base``: ``auth_url`` (tempauth v1) and ``s3_endpoint``."""

    base: Path
    # small segments let tests exercise SLO/multipart with a few MiB (Swift's default is 1 MiB)
    min_segment_size: int = 1
    max_file_size: int = 5 * 1024**3 + 2
    proxy_port: int = field(default_factory=free_port)
    # a UDP port on loopback for the proxy's access log (bench.swiftlog); None: not sent
    access_log_port: int | None = None
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def auth_url(self) -> str:
        return f"{self.endpoint}/auth/v1.0"

    @property
    def storage_url(self) -> str:
        return f"{self.endpoint}/v1/AUTH_test"

    def start(self, timeout: float = 30.0) -> SwiftServer:
        why = swift_missing()
        if why:
            raise RuntimeError(why)
        etc, devices, logs = self.base / "etc", self.base / "srv", self.base / "log"
        for d in (etc, devices / "d1", logs):
            d.mkdir(parents=True, exist_ok=True)
        conf = _SWIFT_CONF.format(max_file_size=self.max_file_size)
        (etc / "swift.conf").write_text(conf)
        if not Path("/etc/swift/swift.conf").exists():
            # Swift reads /etc/swift/swift.conf when imported, before it reads swift_dir
            Path("/etc/swift").mkdir(parents=True, exist_ok=True)
            Path("/etc/swift/swift.conf").write_text(conf)
        user = _user()
        ports = {kind: free_port() for kind in ("object", "container", "account")}
        memcache_port = free_port()
        for kind, port in ports.items():
            (etc / f"{kind}-server.conf").write_text(_BACKEND_CONF.format(
                etc=etc, devices=devices, port=port, user=user, kind=kind))
        (etc / "proxy-server.conf").write_text(_PROXY_CONF.format(
            etc=etc, port=self.proxy_port, user=user, memcache_port=memcache_port,
            min_segment_size=self.min_segment_size, access_log=self._access_log_conf()))
        subprocess.run([SYSTEM_PYTHON, "-c", _BUILD_RINGS, str(etc),
                        *(str(ports[k]) for k in ("object", "container", "account"))],
                       check=True, capture_output=True)
        try:
            self._spawn("memcached", ["memcached", "-l", "127.0.0.1", "-p", str(memcache_port),
                                      "-U", "0", "-u", user, "-m", "64"], logs)
            for kind in ("object", "container", "account"):
                self._spawn(kind, [f"swift-{kind}-server", str(etc / f"{kind}-server.conf")],
                            logs)
            self._spawn("proxy", ["swift-proxy-server", str(etc / "proxy-server.conf")], logs)
            self._wait([self.proxy_port, *ports.values()], timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _access_log_conf(self) -> str:
        """proxy-logging's settings that send one line per request to ``access_log_port``."""
        if self.access_log_port is None:
            return ""
        return (f"access_log_udp_host = 127.0.0.1\naccess_log_udp_port = {self.access_log_port}\n"
                f"access_log_level = INFO\nlog_msg_template = {TEMPLATE}\n")

    def _spawn(self, name: str, argv: list[str], logs: Path) -> None:
        with open(logs / f"{name}.log", "ab") as log:
            self._procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def _wait(self, ports: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(ports)
        # one client for all the polls: each httpx.get() would build an SSL context (~35 ms
        # of CPU, taken from the servers starting beside it)
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for name, proc in self._procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"swift {name} exited with {proc.returncode}:\n"
                                           + self.log(name))
                try:
                    client.get(f"http://127.0.0.1:{pending[0]}/healthcheck")
                    pending.pop(0)
                    continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"swift did not answer on port {pending[0]} within "
                                       f"{timeout:g}s:\n" + self.log("proxy"))
                time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """The running processes by name: ``proxy``, ``object``, ``container``, ``account``,
        ``memcached`` (with ``workers = 0`` each server is one process)."""
        return {name: proc.pid for name, proc in self._procs.items() if proc.poll() is None}

    def log(self, name: str) -> str:
        path = self.base / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()

    def token(self) -> tuple[str, str]:
        """(storage URL, token) from tempauth, for tests that look inside Swift."""
        r = httpx.get(self.auth_url, headers={"X-Auth-User": SWIFT_USER,
                                              "X-Auth-Key": SWIFT_KEY})
        r.raise_for_status()
        return r.headers["x-storage-url"], r.headers["x-auth-token"]

    def __enter__(self) -> SwiftServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name

"""What the harness measures: a server that speaks the Image API v2, and how to reach it.

A :class:`Target` is a base URL, the identity headers it trusts and the process tree whose
memory and CPU are sampled. :class:`StreamdServer` starts streamd as a subprocess on a free
loopback port with its own data directory; :func:`glance_target` describes a running Glance
(found through its uWSGI pidfile).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

START_TIMEOUT = 60.0  # seconds for streamd to answer GET /versions (migrations run first)
STOP_TIMEOUT = 15.0  # seconds after SIGTERM before SIGKILL
REPO = Path(__file__).resolve().parent.parent
GLANCE_PIDFILE = Path.home() / ".cache" / "streamd-peers" / "glance" / "uwsgi.pid"


@dataclass
class Target:
    name: str  # "streamd", "streamd-xxh3", "glance"
    url: str  # http://127.0.0.1:PORT
    root_pid: Callable[[], int | None]  # the process tree to sample; None: not sampled
    roles: str = "member,reader"  # Glance 33's default policy wants "reader" to list
    extra_headers: dict[str, str] = field(default_factory=dict)
    uploads_only: bool = False  # a variant that differs only on the upload path
    transfers_only: bool = False  # a variant that differs only on the data path
    ranges: bool = False  # a transfers-only variant that also runs the ranged reads
    ca_file: str | None = None  # an https target: the CA its clients verify it with
    os_hash_algo: str | None = None  # what uploads must report; None: not checked
    purge_cache: bool = False  # DELETE /v2/cache/{id} (as admin) before deleting an image
    # clients at once for creates/deletes that are not measured (Glance on SQLite half-fails
    # concurrent deletes: the status becomes "deleted" but the image stays listed)
    setup_concurrency: int = 8
    notes: list[str] = field(default_factory=list)

    def headers(self, project: str) -> dict[str, str]:
        """The identity headers for a request on behalf of ``project``."""
        return {
            **self.extra_headers,
            "X-Project-Id": project,
            "X-User-Id": f"{project}-user",
            "X-Roles": self.roles,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2.0, ca_file: str | None = None) -> int | None:
    """The status code of ``GET url``, or None when nothing answers (``ca_file``: the CA
    that signed an https server's certificate)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


class StreamdServer:
    """``python -m streamd serve`` on a free port with ``data_dir``; a context manager."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        uploads_only: bool = False,
        transfers_only: bool = False,
        ranges: bool = False,
        tls: bool = False,
        host: str = "127.0.0.1",
        argv_prefix: tuple[str, ...] = (),
    ) -> None:
        """``tls``: serve https with a certificate from a throwaway trustme CA, whose PEM
        the target's clients verify with (``Target.ca_file``). ``argv_prefix``: what the
        server runs under (``ip netns exec NS`` with ``host`` an address of that namespace)."""
        self.name = name
        self.uploads_only = uploads_only
        self.transfers_only = transfers_only
        self.ranges = ranges
        self.data_dir = data_dir
        self.env = env or {}
        self.python = python
        self.port = free_port()
        self.host = host
        self.argv_prefix = list(argv_prefix)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.ca_file = str(data_dir.parent / f"{name}-ca.pem") if tls else None
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, **self._tls_env()}
        argv = [*self.argv_prefix, self.python, "-m", "streamd", "serve",
                "--bind", f"{self.host}:{self.port}", "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            if http_status(f"{self.url}/versions", timeout=1.0, ca_file=self.ca_file) == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer GET /versions within "
                           f"{START_TIMEOUT:.0f} s:\n" + self.log_tail())

    def _tls_env(self) -> dict[str, str]:
        if self.ca_file is None:
            return {}
        import trustme

        ca = trustme.CA()
        ca.cert_pem.write_to_path(self.ca_file)
        cert = ca.issue_cert("127.0.0.1")
        chain = self.data_dir.parent / f"{self.name}-chain.pem"
        key = self.data_dir.parent / f"{self.name}-key.pem"
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(chain), append=i > 0)
        cert.private_key_pem.write_to_path(str(key))
        return {"STREAMD_TLS_CERTFILE": str(chain), "STREAMD_TLS_KEYFILE": str(key)}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def target(self) -> Target:
        algo = self.env.get("STREAMD_OS_HASH_ALGO", "sha512")
        return Target(self.name, self.url, self.pid, uploads_only=self.uploads_only,
                      transfers_only=self.transfers_only, ranges=self.ranges,
                      os_hash_algo=algo, ca_file=self.ca_file)

    def __enter__(self) -> StreamdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def glance_pid(pidfile: Path = GLANCE_PIDFILE) -> int | None:
    """The uWSGI master of the peer Glance, when its pidfile names a live process."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def glance_target(url: str) -> Target:
    """Glance behind uWSGI, keystone-less: it trusts the headers keystonemiddleware sets."""
    t = Target(
        "glance",
        url.rstrip("/"),
        glance_pid,
        extra_headers={"X-Identity-Status": "Confirmed"},
        os_hash_algo="sha512",
        purge_cache=True,
        setup_concurrency=1,
    )
    pid = glance_pid()
    port = urlsplit(t.url).port or 80
    if pid is None:
        t.notes.append(f"no live uWSGI pid in {GLANCE_PIDFILE}: Glance RSS/CPU not sampled")
    elif not _listens_on(pid, port):
        t.root_pid = lambda: None
        t.notes.append(f"uWSGI pid {pid} from {GLANCE_PIDFILE} does not listen on port {port}: "
                       "Glance RSS/CPU not sampled")
    return t


def _listens_on(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)

"""Real streamd servers for tests: a subprocess on a free loopback port with its own data dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_HEADERS = {"X-Project-Id": "admin-project", "X-User-Id": "admin", "X-Roles": "admin"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``streamd serve``; ``url`` is its base URL, ``data_dir`` its data."""

    data_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    preexec: object = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # more `streamd serve` options, e.g. ("--database-url", url)
    args: Sequence[str] = ()
    # True: plain HTTP; else the server serves TLS (STREAMD_TLS_* in env) and this is what
    # httpx verifies it with (a CA bundle's path, or an ssl.SSLContext)
    verify: Any = True

    @property
    def url(self) -> str:
        scheme = "http" if self.verify is True else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
        env.update(self.env)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamd", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--data-dir", str(self.data_dir), *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + timeout
        # one client for all the polls: each httpx.get() would build an SSL context (~35 ms
        # of CPU, taken from the server starting beside it on a 2-core machine)
        with httpx.Client(timeout=1.0, verify=self.verify) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"streamd exited with {self.proc.returncode}:\n"
                                       f"{self.log()}")
                try:
                    if client.get(self.url + "/versions").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"streamd did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

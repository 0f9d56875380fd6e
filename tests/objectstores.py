"""Real object stores for tests: a single-node OpenStack Swift (Swift API + S3 API) and moto.

``SwiftServer`` is a "Swift all in one" on loopback, written by the project: Debian's Swift
(``apt-get install swift swift-proxy swift-object swift-container swift-account memcached``;
``.ci/run`` installs them when missing) with tempauth and the s3api middleware, rings of one
replica on a plain directory under the test's temp dir, every server on a free port. It
starts in ~4 s and is torn down (process groups killed) when the block ends. It lives in
``bench/swiftserver.py``, which the bench uses too (the bench does not import the tests).

``MotoServer`` is moto's S3 in server mode (a real HTTP server in a subprocess), never a
mock object patched into boto3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from bench.swiftserver import (
    SWIFT_COMMANDS,
    SWIFT_KEY,
    SWIFT_PACKAGES,
    SWIFT_USER,
    SYSTEM_PYTHON,
    SwiftServer,
    swift_missing,
)
from tests.servers import free_port

__all__ = ["SWIFT_COMMANDS", "SWIFT_KEY", "SWIFT_PACKAGES", "SWIFT_USER", "SYSTEM_PYTHON",
           "MotoServer", "SwiftServer", "swift_missing"]


@dataclass
class MotoServer:
    """moto's S3 in server mode on a free loopback port."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:  # one for all polls (see ServerProcess)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"moto server exited with {self.proc.returncode}")
                try:
                    client.get(self.endpoint + "/moto-api/")
                    return self
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("moto server did not start") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

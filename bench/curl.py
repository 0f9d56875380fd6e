"""Single transfers with curl: the client every operator has, and the reference load client.

Times come from curl's own ``%{time_total}`` (connect to last byte), not from process
start-up. ``Expect:`` is sent empty: uWSGI (Glance) never answers ``100-continue``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 3600.0  # seconds; a 1 GiB transfer at 1 MiB/s would still finish


@dataclass(frozen=True)
class CurlResult:
    status: int
    seconds: float
    uploaded: int  # bytes
    downloaded: int  # bytes


def _curl(args: list[str], headers: dict[str, str], cacert: str | None = None) -> CurlResult:
    argv = ["curl", "-sS", "--http1.1", "-o", "/dev/null",
            "-w", "%{http_code} %{time_total} %{size_upload} %{size_download}"]
    if cacert:
        argv += ["--cacert", cacert]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(argv + args, capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed: {done.stderr.strip()}")
    code, total, up, down = done.stdout.split()
    return CurlResult(int(code), float(total), int(float(up)), int(float(down)))


def upload(url: str, path: Path, headers: dict[str, str], cacert: str | None = None
           ) -> CurlResult:
    """``curl -T path`` (a PUT) with an octet-stream body."""
    return _curl(["-T", str(path), url],
                 {**headers, "Content-Type": "application/octet-stream", "Expect": ""}, cacert)


def download(url: str, headers: dict[str, str], byte_range: str | None = None,
             cacert: str | None = None) -> CurlResult:
    """``curl -o /dev/null url``; ``byte_range`` like ``"0-1048575"``."""
    args = [url] if byte_range is None else ["-r", byte_range, url]
    return _curl(args, headers, cacert)

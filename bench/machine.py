"""What the figures were measured on: hardware, kernel, and the versions of everything timed."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
GLANCE_VENV = Path.home() / ".cache" / "streamd-peers" / "glance-venv"


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _streamd_version() -> str | None:
    try:
        import streamd
    except ImportError:
        return None
    return str(streamd.__version__)


def _glance_version() -> str | None:
    for site in GLANCE_VENV.glob("lib/python*/site-packages"):
        for info in site.glob("glance-*.dist-info"):
            return info.name.removeprefix("glance-").removesuffix(".dist-info")
    return None


def _uncommitted(path: str) -> list[str]:
    """Files under ``path`` that differ from HEAD: the server measured is not HEAD's alone."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", path],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line[3:] for line in out.splitlines()]


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")


def page_reporting() -> dict[str, str] | None:
    """The guest's free page reporting (virtio-balloon), where the kernel exposes it: with
    ``min_free_ms`` 0, memory freed goes back to the host at once and costs a host fault
    per page when it is used again (~2.4 s of system time per GiB on the bench's VM), so
    a run that allocates new memory pays for it. ``reported_kib`` grows with every report."""
    try:
        names = sorted(p.name for p in PAGE_REPORTING.iterdir())
    except OSError:
        return None
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            found[name] = (PAGE_REPORTING / name).read_text().strip()
    return found


DAMON = Path("/sys/kernel/mm/damon/admin/kdamonds")


def damon_schemes() -> list[dict[str, Any]]:
    """What DAMON does to this machine's memory on its own, per scheme of each running
    kdamond: on the bench's VM, ``pageout`` of file pages not touched for a minute, so a
    cache entry (or any file) idle that long is read from disk again, into new memory."""
    schemes: list[dict[str, Any]] = []
    for kdamond in sorted(DAMON.glob("[0-9]*")):
        with contextlib.suppress(OSError, ValueError):
            if (kdamond / "state").read_text().strip() != "on":
                continue
            for ctx in sorted((kdamond / "contexts").glob("[0-9]*")):
                aggr_us = int((ctx / "monitoring_attrs/intervals/aggr_us").read_text())
                for scheme in sorted((ctx / "schemes").glob("[0-9]*")):
                    age = int((scheme / "access_pattern/age/min").read_text())
                    schemes.append({
                        "operations": (ctx / "operations").read_text().strip(),
                        "action": (scheme / "action").read_text().strip(),
                        "min_age_s": age * aggr_us / 1e6,
                        "quota_bytes": int((scheme / "quotas/bytes").read_text()),
                        "quota_interval_ms": int(
                            (scheme / "quotas/reset_interval_ms").read_text()),
                    })
    return schemes


def describe(data_dir: Path) -> dict[str, Any]:
    """Machine and software facts for the JSON report."""
    fs = None
    best = ""
    for part in psutil.disk_partitions(all=True):
        if str(data_dir.resolve()).startswith(part.mountpoint) and len(part.mountpoint) > len(best):
            best, fs = part.mountpoint, f"{part.fstype} on {part.device} ({part.mountpoint})"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_total_mib": psutil.virtual_memory().total // (1024 * 1024),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "data_fs": fs,
        "git": _first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
        "git_uncommitted_streamd_files": _uncommitted("streamd"),
        "page_reporting": page_reporting(),
        "damon_schemes": damon_schemes(),
        "versions": {
            "streamd": _version("streamd") or _streamd_version(),
            "glance": _glance_version(),
            "hypercorn": _version("hypercorn"),
            "anycorn": _version("anycorn"),
            "trio": _version("trio"),
            "uvloop": _version("uvloop"),
            "aiofiles": _version("aiofiles"),
            "xxhash": _version("xxhash"),
            "curl": _first_line(["curl", "--version"]),
            "qemu-img": _first_line(["qemu-img", "--version"]),
        },
    }

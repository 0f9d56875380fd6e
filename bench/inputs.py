"""The files the harness uploads, generated in its temp dir so every run moves the same bytes.

- ``random``: incompressible bytes (``os.urandom``), the common case for a disk image;
- ``zero``: a sparse file of the same size, all zeros (a fresh raw volume; a store may skip
  zero chunks, a client reads it at memory speed);
- ``qcow2``: the random bytes converted with ``qemu-img`` (when installed), so format
  inspection runs on a real header.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRITE_CHUNK = 16 * 1024 * 1024  # urandom + write per 16 MiB: fast, bounded memory


@dataclass(frozen=True)
class Input:
    kind: str  # "random", "zero", "qcow2"
    path: Path
    size: int  # bytes
    md5: str  # what the server must report as ``checksum``
    disk_format: str  # "raw" or "qcow2"
    # the disk size its format records (qcow2: the raw input's size), which the server's
    # format inspection must report as virtual_size; None: not checked
    virtual_size: int | None = None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(WRITE_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def make_random(path: Path, size: int) -> Input:
    h = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(WRITE_CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return Input("random", path, size, h.hexdigest(), "raw")


def make_zero(path: Path, size: int) -> Input:
    with open(path, "wb") as f:
        f.truncate(size)
    h = hashlib.md5()
    zeros = bytes(WRITE_CHUNK)
    left = size
    while left:
        n = min(WRITE_CHUNK, left)
        h.update(zeros[:n] if n < WRITE_CHUNK else zeros)
        left -= n
    return Input("zero", path, size, h.hexdigest(), "raw")


def make_qcow2(raw: Path, path: Path) -> Input | None:
    """``qemu-img convert`` of ``raw``; None when qemu-img is not installed."""
    if shutil.which("qemu-img") is None:
        return None
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, capture_output=True)
    return Input("qcow2", path, path.stat().st_size, _md5(path), "qcow2",
                 virtual_size=raw.stat().st_size)


def make_inputs(directory: Path, size: int, kinds: set[str]) -> dict[str, Input]:
    """Generate the inputs named in ``kinds`` (``random`` is always made) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {"random": make_random(directory / "random.raw", size)}
    if "zero" in kinds:
        out["zero"] = make_zero(directory / "zero.raw", size)
    if "qcow2" in kinds:
        q = make_qcow2(out["random"].path, directory / "random.qcow2")
        if q is not None:
            out["qcow2"] = q
    return out

"""Sparse files: where a file's data and its holes are, and how to make a hole.

A hole reads as zeros and takes no disk space. ``extents`` walks a file with
``SEEK_DATA``/``SEEK_HOLE`` (Linux and the BSDs; one ``lseek`` per run, so a 10 GiB image
with a few data runs is described in microseconds), as oVirt imageio's ``file`` backend
does; ``punch_hole`` turns a range back into a hole (``fallocate(PUNCH_HOLE | KEEP_SIZE)``),
or writes zeros where the file system cannot.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

from streamd.units import MiB

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZEROS = bytes(1 * MiB)  # what punch_hole writes where the file system has no holes

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


@dataclass(frozen=True)
class Extent:
    """``length`` bytes from ``start``: data, or zeros (``zero``: a hole, nothing stored)."""

    start: int
    length: int
    zero: bool

    @property
    def end(self) -> int:
        return self.start + self.length

    def to_json(self) -> dict[str, int | bool]:
        return {"start": self.start, "length": self.length, "zero": self.zero}


def extents(fd: int, size: int, start: int = 0) -> list[Extent]:
    """The data and hole runs of bytes ``[start, size)`` of ``fd``, in order, adjacent.

    A file system without ``SEEK_DATA`` reports the whole file as data, which is true.
    """
    runs: list[Extent] = []
    pos = start
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data past pos
                raise
            data = size
        data = min(data, size)
        if data > pos:
            runs.append(Extent(pos, data - pos, zero=True))
        if data >= size:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        runs.append(Extent(data, hole - data, zero=False))
        pos = hole
    return runs


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Make ``[offset, offset + length)`` of ``fd`` read as zeros, freeing its blocks where
    the file system can; the file's size does not change."""
    if length <= 0:
        return
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(err, os.strerror(err))
    end = offset + length
    while offset < end:
        n = os.pwrite(fd, memoryview(_ZEROS)[:min(len(_ZEROS), end - offset)], offset)
        offset += n


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort ``[start, end)`` ranges and join those that overlap or touch (what a stage or a
    partial download holds, however its parts arrived)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged

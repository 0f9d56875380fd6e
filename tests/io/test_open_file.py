"""``OpenFile.will_need``: the read-ahead hint is given for pages not in the page cache and
skipped for pages that are (its cost in a boot storm, where every window is cached).
``OpenFile.cached`` says the same of a range's two ends.

The evicted case drops the file's clean pages with ``POSIX_FADV_DONTNEED``; only the file's
last page is probed to see that, since an ``RWF_NOWAIT`` read of a missing page starts
reading it and its neighbours."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from streamd.io import OpenFile

MiB = 1024 * 1024


def _advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_WILLNEED:
            calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    return calls


def test_cached_range_is_not_advised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image"
    path.write_bytes(os.urandom(4 * MiB))
    path.read_bytes()  # every page in the page cache
    calls = _advised(monkeypatch)
    fd = os.open(path, os.O_RDONLY)
    with OpenFile(fd, 4 * MiB) as file:
        file.will_need(MiB, 2 * MiB)
    assert calls == []


def test_evicted_range_is_advised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image"
    path.write_bytes(os.urandom(4 * MiB))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    for _ in range(50):  # pages still in a per-CPU LRU batch are dropped on a later try
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:  # the file's last page: its read-ahead does not reach the range asked below
            os.preadv(fd, [bytearray(1)], 4 * MiB - 1, os.RWF_NOWAIT)
        except BlockingIOError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the page cache kept the file's pages: the probe cannot be shown here")
    calls = _advised(monkeypatch)
    with OpenFile(fd, 4 * MiB) as file:
        assert not file.cached(MiB, 3 * MiB)  # its last byte is the evicted last page
        file.will_need(MiB, 2 * MiB)
        file.will_need(0, 0)  # nothing to read: no hint
    assert calls == [(MiB, 2 * MiB, os.POSIX_FADV_WILLNEED)]


def test_cached_says_whether_both_ends_are_in_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(os.urandom(4 * MiB))
    path.read_bytes()
    with OpenFile(os.open(path, os.O_RDONLY), 4 * MiB) as file:
        assert file.cached(0, 4 * MiB)
        assert file.cached(MiB, 1)
        assert not file.cached(0, 0)  # an empty range has no bytes to send
        assert not file.cached(3 * MiB, 2 * MiB)  # its last byte is past the end

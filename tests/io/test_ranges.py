"""Range headers to (offset, length), per RFC 9110 §14."""

from __future__ import annotations

import pytest

from streamd.errors import RangeNotSatisfiable
from streamd.io import parse_byte_range, resolve_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=0-9", 10, (0, 10)),
        ("bytes=2-5", 10, (2, 4)),
        ("bytes=9-9", 10, (9, 1)),
        ("bytes=5-100", 10, (5, 5)),  # last past the end: clipped
        ("bytes=3-", 10, (3, 7)),
        ("bytes=-1", 10, (9, 1)),
        ("bytes=-4", 10, (6, 4)),
        ("bytes=-100", 10, (0, 10)),  # suffix longer than the image: all of it
        (" Bytes = 2 - 5 ", 10, (2, 4)),  # unit is case-insensitive
        ("bytes=0-", 1, (0, 1)),
    ],
)
def test_satisfiable(header: str, size: int, expected: tuple[int, int]) -> None:
    assert parse_byte_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=5-2",  # last before first: invalid, ignored
        "bytes=0-1,4-5",  # several ranges: served whole
        "items=0-5",
        "bytes=a-b",
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=١-٢",
        "bytes=1-2-3",
    ],
)
def test_ignored(header: str) -> None:
    assert parse_byte_range(header, 10) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=0-0", 0)],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_byte_range(header, size)
    assert info.value.status == 416
    assert info.value.headers == {"Content-Range": f"bytes */{size}"}


def test_suffix_of_empty_image_is_served_whole() -> None:
    assert parse_byte_range("bytes=-5", 0) is None


def test_resolve_range_rejects_contradictory_specs() -> None:
    with pytest.raises(ValueError):
        resolve_range(10, first=1, suffix=2)
    with pytest.raises(ValueError):
        resolve_range(10)
    with pytest.raises(ValueError):
        resolve_range(10, first=5, last=4)
    assert resolve_range(10, first=0, last=None) == (0, 10)

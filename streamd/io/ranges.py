"""Byte ranges (RFC 9110 §14) turned into the ``(offset, length)`` that ``Store.read`` takes.

Pure functions: the HTTP layer passes the ``Range`` header's text and the image size, and
gets back what to read, ``None`` to serve the whole image (a header a server may ignore:
another unit, several ranges, bad syntax), or ``RangeNotSatisfiable`` (416).
"""

from __future__ import annotations

import re

from streamd.errors import RangeNotSatisfiable

# one range, ASCII digits only: int() alone would also take "+1", "1_000" and "١"
_SINGLE_RANGE = re.compile(r"bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)", re.IGNORECASE | re.ASCII)


def resolve_range(
    size: int, *, first: int | None = None, last: int | None = None, suffix: int | None = None
) -> tuple[int, int]:
    """Return ``(offset, length)`` for ``first-last``, ``first-`` or ``-suffix`` of ``size``.

    ``last`` past the end is clipped to it and a suffix longer than the image means the
    whole image, as RFC 9110 says; a ``first`` at or past the end, or an empty suffix,
    selects nothing and raises ``RangeNotSatisfiable``.
    """
    if suffix is not None:
        if first is not None or last is not None:
            raise ValueError("a suffix range has no first or last position")
        if suffix == 0:
            raise _unsatisfiable(size)
        length = min(suffix, size)
        return size - length, length
    if first is None:
        raise ValueError("a range needs a first position or a suffix length")
    if last is not None and last < first:
        raise ValueError("a range's last position comes before its first")
    if first >= size:
        raise _unsatisfiable(size)
    end = size if last is None else min(last + 1, size)
    return first, end - first


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Return ``(offset, length)`` for a single-range ``Range`` header, or ``None``.

    ``None`` means "ignore the header, serve the whole image": it is what RFC 9110 allows
    for a header that is malformed, uses another unit or asks for several ranges. A suffix
    of an empty image is satisfiable but has no ``Content-Range`` form: served whole too.
    """
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if first_text:
        first, last = int(first_text), int(last_text) if last_text else None
        if last is not None and last < first:
            return None  # invalid syntax per RFC 9110 §14.1.1: ignored, not refused
        return resolve_range(size, first=first, last=last)
    if last_text:
        suffix = int(last_text)
        return None if size == 0 and suffix else resolve_range(size, suffix=suffix)
    return None  # "bytes=-"


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the range asked for lies outside the image's {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )

"""Text and TOML values as typed settings: one conversion for the settings and the stores.

A value may come from a TOML file (already a bool, int or list) or from an environment
variable (always text), so each type accepts both spellings.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any


def convert(kind: Any, value: Any) -> Any:
    """A TOML or environment value as ``kind``: bool (true/false, yes/no, on/off, 1/0), int,
    float, str, Path, ``X | None`` or ``tuple[X, ...]`` (a list, or commas in a string).

    TypeError or ValueError when it is not one; the caller names the setting.
    """
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType):  # ``X | None``: an optional setting
        (kind,) = (a for a in args if a is not type(None))
        if kind is int and str(value).strip().lower() in ("", "none", "unlimited"):
            return None
        return convert(kind, value)
    if typing.get_origin(kind) is tuple:  # ``tuple[X, ...]``: a list, or commas in a string
        item = args[0]
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError
        if item is str and not all(isinstance(i, str) for i in items):
            raise ValueError  # names are written as strings: [1, 2] is a mistake
        return tuple(convert(item, i.strip() if isinstance(i, str) else i) for i in items
                     if str(i).strip())
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if kind is int:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    if kind in (str, Path):
        return kind(str(value))
    return kind(value)

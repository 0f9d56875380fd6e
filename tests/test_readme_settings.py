"""The README's settings table against the settings object: every setting is documented
with its default, and nothing is documented that does not exist.

A row names one setting or several (``a`` / ``b``), and its default cell gives their defaults
in the same order (``x / y``; one value for all). ``[stores.<id>]`` is the ``stores`` setting.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from streamd.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def documented() -> dict[str, str]:
    """{setting: its default cell} from the table under ``## Configuration``."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names = [n.strip().strip("`") for n in cells[0].split(" / ")]
        defaults = [d.strip() for d in cells[1].split(" / ")]
        if len(defaults) == 1:
            defaults = defaults * len(names)
        assert len(defaults) == len(names), f"row {cells[0]}: one default per setting"
        for name, default in zip(names, defaults, strict=True):
            name = "stores" if name == "[stores.<id>]" else name
            assert name not in rows, f"{name} documented twice"
            rows[name] = default
    return rows


def renderings(value: Any) -> list[str] | None:
    """How a default may be written in the table; None: any words (unset, an empty list)."""
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value), *(f"{value // size} {unit}" for unit, size in UNITS
                              if value >= size and value % size == 0)]
    if isinstance(value, float):
        return [f"{value:g}"]
    if isinstance(value, tuple):
        return [",".join(str(v) for v in value)]
    return [str(value)]


def test_every_setting_is_documented_and_nothing_else() -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    rows = documented()
    assert sorted(names - rows.keys()) == [], "settings missing from the README's table"
    assert sorted(rows.keys() - names) == [], "documented settings that do not exist"


def test_the_documented_defaults_are_the_defaults() -> None:
    rows = documented()
    for field in dataclasses.fields(Settings):
        if field.name not in rows:
            continue  # test_every_setting_is_documented_and_nothing_else names it
        cell = rows[field.name].replace("`", "")
        assert cell, f"{field.name}: no default documented"
        if field.name == "stores":
            continue  # one file store: a sentence
        expected = renderings(field.default)
        if expected is not None:
            assert any(re.search(rf"(?<![\w.]){re.escape(e)}(?![\w.])", cell)
                       for e in expected), f"{field.name}: README says {cell!r}, the default " \
                                           f"is {field.default!r}"

"""A module does one job and is named for it (DESIGN.md, "The layers").

The import rules between the layers are import-linter contracts in pyproject.toml
(``lint-imports``); this is the one layering rule that is about names, not imports.
"""

from __future__ import annotations

from pathlib import Path

import streamd

# names that say nothing about what a module does
VAGUE_NAMES = {"utils.py", "helpers.py", "misc.py", "common.py"}


def test_no_module_is_named_for_nothing() -> None:
    root = Path(streamd.__file__).parent
    vague = sorted(str(p.relative_to(root.parent)) for p in root.rglob("*.py")
                   if p.name in VAGUE_NAMES)
    assert not vague, f"name these modules for their job: {', '.join(vague)}"

"""The README's tour, run as written: its fenced blocks marked ``tour`` (```` ```sh tour ````,
```` ```python tour ````), in order, in an empty directory, against a real server. Only the
address differs (``http://127.0.0.1:9292`` becomes the test server's), so a tour that no
longer works fails here, not in a newcomer's terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.servers import ServerProcess

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "http://127.0.0.1:9292"
BLOCK = re.compile(r"^```(sh|python) tour\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def tour_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each ``tour`` block, in the README's order."""
    return [(m[1], m[2]) for m in BLOCK.finditer(text)]


def test_the_readme_has_a_tour() -> None:
    languages = [language for language, _ in tour_blocks(README.read_text())]
    assert languages.count("sh") >= 2 and "python" in languages


def test_the_readme_tour_runs_as_written(server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    steps: list[tuple[str, str]] = []
    for language, code in tour_blocks(README.read_text()):
        code = code.replace(README_URL, server.url)
        if language == "sh" and steps and steps[-1][0] == "sh":
            # one shell for the sh blocks in a row: a later one uses the $id an earlier set
            steps[-1] = ("sh", steps[-1][1] + code)
        else:
            steps.append((language, code))
    results = []
    for language, code in steps:
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else \
            ["python3", "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stderr}"
        results.append(done.stdout)
    shell, glance = results[0], results[-1]
    assert '"status": "active"' in shell and '"size": 8388608' in shell
    assert "streamd!streamd!" in shell and "same bytes" in shell
    assert "tour-glanceclient" in glance
    assert (tmp_path / "disk.img").stat().st_blocks * 512 < 8 * 1024 * 1024  # it has a hole

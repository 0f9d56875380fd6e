"""``streamd serve`` claims its data dir and its port, and says so in one line when it cannot.

A second server on the same data dir, or on the port of a server with workers, is refused
at start; a start-up failure is one line saying what and where, a non-zero exit, and no
"serving on" claimed before it was true; workers start from the installed package, whatever
the working directory holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import ADMIN_HEADERS, ServerProcess, free_port

STREAMD = Path(sys.executable).parent / "streamd"  # the installed console script


def _start_refused(data_dir: Path, port: int, env: dict[str, str] | None = None,
                   args: Sequence[str] = (), cwd: Path | None = None,
                   ) -> subprocess.CompletedProcess[str]:
    """Run ``streamd serve`` expecting it to give up at start."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    return subprocess.run(
        [str(STREAMD), "serve", "--bind", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
         *args], env={**environ, **(env or {})}, capture_output=True, text=True, timeout=60,
        cwd=cwd)


def _one_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The failure's one line: exit status not 0, no traceback, no claim to be serving."""
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out and "serving on" not in out, out
    lines = [line for line in out.splitlines() if line.startswith("streamd: ")]
    assert len(lines) == 1, out
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data_dir=data, env={"STREAMD_WORKERS": "2"}) as first:
        assert first.proc is not None
        line = _one_line(_start_refused(data, free_port()), str(data.resolve()),
                         f"pid {first.proc.pid}", "another streamd server")
        assert "data_dir" in line
        # the first one is untouched and still serves
        assert httpx.get(first.url + "/v2/images", headers=ADMIN_HEADERS).status_code == 200
    # once it has stopped the data dir is free again
    with ServerProcess(data_dir=data) as again:
        assert httpx.get(again.url + "/versions").status_code == 200


def test_another_server_on_the_port_of_one_with_workers_is_refused(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "a", env={"STREAMD_WORKERS": "2"}) as first:
        done = _start_refused(tmp_path / "b", first.port, env={"STREAMD_WORKERS": "2"})
        _one_line(done, f"127.0.0.1:{first.port}", "in use")
        r = httpx.post(first.url + "/v2/images", headers=ADMIN_HEADERS, json={"name": "x"})
        assert r.status_code == 201
        for _ in range(20):  # every connection lands on the first server's processes
            listed = httpx.get(first.url + "/v2/images", headers=ADMIN_HEADERS).json()
            assert [i["id"] for i in listed["images"]] == [r.json()["id"]]


@contextmanager
def _serving(args: Sequence[str], cwd: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    with subprocess.Popen([str(STREAMD), "serve", "--bind", f"127.0.0.1:{port}", *args],
                          cwd=cwd, env={**environ, **env}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "streamd serving on" in line:
                    break
            else:
                pytest.fail(f"streamd exited with {proc.wait()} before serving")
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def test_workers_start_from_the_installed_package_whatever_the_cwd(tmp_path: Path) -> None:
    decoy = tmp_path / "streamd"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('imported the decoy streamd')\n")
    with _serving(["--data-dir", str(tmp_path / "data")], cwd=tmp_path,
                  env={"STREAMD_WORKERS": "2"}) as url:
        primary = next(p for p in psutil.process_iter(["cmdline"])
                       if p.info["cmdline"] and url.rsplit(":", 1)[1] in " ".join(
                           p.info["cmdline"]) and "--worker" not in p.info["cmdline"])
        workers = primary.children()
        assert len(workers) == 1 and workers[0].is_running()
        for _ in range(10):
            assert httpx.get(url + "/v2/images", headers=ADMIN_HEADERS).status_code == 200
        assert workers[0].is_running()


def test_serving_on_is_logged_once_it_is_true(tmp_path: Path) -> None:
    with _serving(["--data-dir", str(tmp_path / "data")], cwd=tmp_path, env={}) as url:
        # the line came only once the socket accepts
        assert httpx.get(url + "/versions").status_code == 200


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    _one_line(_start_refused(data, free_port()), str(data), "not a directory")


def test_data_dir_that_is_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: make the directory immutable
        subprocess.run(["chattr", "+i", str(data)], check=True)
    else:
        data.chmod(0o555)
    try:
        _one_line(_start_refused(data, free_port()), str(data), "writable")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(data)], check=True)
        else:
            data.chmod(0o755)


def test_port_in_use(tmp_path: Path, server: ServerProcess) -> None:
    _one_line(_start_refused(tmp_path / "data", server.port), f"127.0.0.1:{server.port}",
              "Address already in use")


def test_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://streamd:secret@127.0.0.1:{free_port()}/registry"
    line = _one_line(_start_refused(tmp_path / "data", free_port(),
                                    args=("--database-url", url)),
                     "registry database", f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}")
    assert "secret" not in line

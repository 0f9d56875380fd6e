"""``streamd serve`` on a database server refuses a schema it does not know until
``streamd db upgrade`` has run; the real commands, as an operator types them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.registry.conftest import fresh_database
from tests.servers import ServerProcess


def streamd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    return subprocess.run([sys.executable, "-m", "streamd", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_serve_needs_db_upgrade(tmp_path: Path, server: str) -> None:
    with fresh_database(server, tmp_path) as url:
        refused = ServerProcess(data_dir=tmp_path / "refused", args=("--database-url", url))
        with pytest.raises(RuntimeError, match="exited with 2") as raised:
            refused.start()
        refused.stop()
        assert "run `streamd db upgrade`" in str(raised.value)
        assert "Traceback" not in str(raised.value)

        for _ in range(2):  # a second upgrade finds nothing to do
            done = streamd("db", "upgrade", "--database-url", url)
            assert done.returncode == 0, done.stderr
            assert "registry schema upgraded" in done.stdout
            assert url.split("@")[0] not in done.stdout  # no credentials in the output

        with ServerProcess(data_dir=tmp_path / "served", args=("--database-url", url)) as srv:
            assert httpx.get(srv.url + "/versions").status_code == 200

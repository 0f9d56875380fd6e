from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keystone_server import KeystoneServer
from tests.servers import ADMIN_HEADERS, ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One streamd server for the session, on the embedded defaults (SQLite + file store)."""
    data = tmp_path_factory.mktemp("streamd") / "data"
    with ServerProcess(data_dir=data) as srv:
        yield srv


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    """Start extra servers with their own settings: ``make_server(env={...})``."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, **kwargs: object) -> ServerProcess:
        srv = ServerProcess(data_dir=tmp_path / f"data{len(started)}", env=env or {}, **kwargs)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    """A real Keystone 30 (SQLite, fernet, gunicorn), bootstrapped: ``tests/keystone_server.py``
    (its virtualenv, ``.venv-keystone``, is created on first use)."""
    with KeystoneServer(tmp_path_factory.mktemp("keystone")) as server:
        yield server


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return dict(ADMIN_HEADERS)


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real single-node OpenStack Swift (Swift + S3 API) for the session; skipped, with the
    packages to install, where Swift is not installed."""
    from tests.objectstores import SwiftServer, swift_missing

    why = swift_missing()
    if why:
        pytest.skip(why)
    with SwiftServer(tmp_path_factory.mktemp("swift")) as swift:
        yield swift


@pytest.fixture(scope="session")
def moto_server() -> Iterator[object]:
    """moto's S3 in server mode for the session."""
    from tests.objectstores import MotoServer

    with MotoServer() as moto:
        yield moto

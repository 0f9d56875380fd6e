from __future__ import annotations

import threading
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


class EarlyKeystone:
    """The session's Keystone, started in a thread as soon as collection shows a test needs it.

    Installing Keystone (``.venv-keystone``, on a fresh clone) and bootstrapping it takes a
    minute or more, mostly waiting on pip and on keystone-manage's imports; started early, and
    with the tests that use it run last (``pytest_collection_modifyitems``), it overlaps the
    rest of the suite instead of adding to it. The thread is joined when the session ends.
    """

    def __init__(self, root: Path) -> None:
        self.server = KeystoneServer(root)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="keystone-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as exc:  # handed to the fixture, in the test that needs it
            self.error = exc

    def ready(self) -> KeystoneServer:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError("the session's Keystone did not start") from self.error
        return self.server

    def stop(self) -> None:
        self._thread.join()
        self.server.stop()


_early_keystone: EarlyKeystone | None = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules whose tests use the session's Keystone run last (in their own order), so that
    Keystone can start while the others run."""
    def module(item: pytest.Item) -> str:
        return getattr(getattr(item, "module", None), "__name__", "")

    uses = {module(item) for item in items if "keystone" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: module(item) in uses)  # stable: the order is kept otherwise


def pytest_collection_finish(session: pytest.Session) -> None:
    global _early_keystone
    if session.config.option.collectonly or not any(
            "keystone" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    # the factory behind the ``tmp_path_factory`` fixture (which no hook can request)
    root = session.config._tmp_path_factory.mktemp("keystone")  # type: ignore[attr-defined]
    _early_keystone = EarlyKeystone(root)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _early_keystone is not None:
        _early_keystone.stop()


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    """A real Keystone 30 (SQLite, fernet, gunicorn), bootstrapped: ``tests/keystone_server.py``
    (its virtualenv, ``.venv-keystone``, is created on first use). Started early
    (``EarlyKeystone``) when collection shows it is needed."""
    if _early_keystone is not None:
        yield _early_keystone.ready()
        return
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

"""Registry tests run on SQLite, PostgreSQL and MariaDB/MySQL.

Each test session creates its own database on each server (``streamd_test_<random>``),
migrates it with ``upgrade()``, empties it after every test and drops it at the end; schema
tests get a fresh, empty database of their own. The two servers are the machine's
(``TEST_POSTGRESQL_URL``, ``TEST_MYSQL_URL`` point elsewhere): when one is unreachable its
tests are skipped with the reason, except under ``CI=true``, where they fail, so that the
suite cannot pass in CI without them.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from streamd.registry import ImageRegistry, make_engine, upgrade
from streamd.registry.models import metadata

BACKENDS = ("sqlite", "postgresql", "mysql")
SERVERS = {
    "postgresql": os.environ.get(
        "TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unreachable(backend: str, error: Exception) -> None:
    reason = f"{backend} server at {SERVERS[backend].split('@')[-1]} unreachable: {error}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the registry must be tested on every database)")
    pytest.skip(reason)


@contextmanager
def _server(backend: str) -> Iterator[sa.Connection]:
    """An autocommit connection to the server's maintenance database."""
    engine = sa.create_engine(SERVERS[backend], isolation_level="AUTOCOMMIT")
    try:
        try:
            conn = engine.connect()
        except sa.exc.OperationalError as e:
            _unreachable(backend, e.orig or e)
        with conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """Create an empty database on ``backend``; yield its URL; drop it afterwards."""
    name = f"streamd_test_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{directory / name}.sqlite"
        return
    with _server(backend) as conn:
        if backend == "postgresql":
            # an ICU locale that sorts "a" before "B" (byte order puts "B" first): the
            # columns' own collation, not the database's, must decide the order
            conn.exec_driver_sql(
                f'CREATE DATABASE "{name}" LOCALE_PROVIDER icu ICU_LOCALE \'en-US\' '
                "TEMPLATE template0"
            )
        else:
            # MariaDB's default, case-insensitive collation: the columns must override it
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
        url = sa.make_url(SERVERS[backend]).set(database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            if backend == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def migrated_database(backend: str, directory: Path) -> Iterator[sa.Engine]:
    """A fresh database migrated to head; yields an engine on it, drops it afterwards."""
    with fresh_database(backend, directory) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A new database with no tables at all, dropped after the test."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's database on ``backend``, migrated to head."""
    with migrated_database(backend, tmp_path_factory.mktemp(backend)) as engine:
        yield engine.url.render_as_string(hide_password=False)


@pytest.fixture
def engine(migrated_url: str) -> Iterator[sa.Engine]:
    """An engine on the migrated database; every row is deleted after the test."""
    engine = make_engine(migrated_url)
    try:
        yield engine
    finally:
        engine.dispose()  # connections a test broke on purpose must not be reused here
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()


class FakeClock:
    """The registry's clock for tests: starts at a fixed second and moves only when told."""

    def __init__(self, start: dt.datetime = dt.datetime(2024, 5, 1, 12, 0, 0)) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float = 1) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(engine: sa.Engine, clock: FakeClock) -> ImageRegistry:
    return ImageRegistry(engine, clock=clock)

"""Database connection and schema version: opening the engine, migrating, refusing stale schemas.

alembic (~10 MiB of modules, which stay in the server's RSS once imported) is imported only
when a migration has to run or a schema has to be explained: a server starting on an
up-to-date database reads ``alembic_version`` itself and compares it with ``HEAD``, which a
test keeps equal to the migrations' head. An empty database is not migrated step by step but
created from the models and stamped ``HEAD`` (alembic's own advice for a new database); tests
check on every database that this gives the migrated schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from streamd.errors import StreamdError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0006"  # the newest migration in migrations/versions; tests/registry/test_schema.py checks


class SchemaOutOfDate(StreamdError):
    """The database's schema is older than this code; the message names the command to run."""


class RegistryUnreachable(StreamdError):
    """The registry database did not answer (down, wrong address or credentials)."""

    status = 503


def make_engine(url: str, *, connections: int = 8) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL mode, foreign keys and a busy timeout.

    ``connections`` is how many the server uses at once (its ``db_threads``): the pool
    keeps that many open, so a busy server does not open and close a connection per call
    (with SQLite's default pool of 5, 8 threads did, with the PRAGMAs below every time).
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=connections,
            max_overflow=2,
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=max(connections, 10), max_overflow=10
    )


def make_loop_engine(url: str) -> sa.Engine | None:
    """An engine for reads made in the event loop itself, or None where there is none.

    Only SQLite, a local file: one connection, read-only (``query_only``), and no busy wait
    (``timeout=0``): a read that would wait for a lock fails at once, and its caller goes to
    a worker thread as every other registry call does. In WAL mode a reader waits for no
    writer, so that is rare; what is saved is the thread trip of every image read (about a
    fifth of the server's CPU per 1 MiB range). A server or network database never gets one:
    a round trip may take any time.
    """
    if not url.startswith("sqlite") or url.split("///", 1)[-1] in ("", ":memory:"):
        return None
    engine = sa.create_engine(url, connect_args={"timeout": 0, "check_same_thread": False},
                              pool_size=1, max_overflow=0)

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_conn, _record) -> None:  # noqa: ANN001
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only=ON")
        cur.close()

    return engine


def _alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The database's schema revision (alembic's ``alembic_version`` row), None when empty."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Run the pending migrations (``streamd db upgrade``)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)


def create_current(engine: sa.Engine) -> bool:
    """Create the schema at ``HEAD`` in an empty database; False if it holds any table."""
    from streamd.registry.models import metadata

    with engine.begin() as conn:
        if sa.inspect(conn).get_table_names():
            return False
        metadata.create_all(conn)
        # the table alembic would have made, and the row its ``stamp`` would write
        version = sa.Table(
            "alembic_version",
            sa.MetaData(),
            sa.Column("version_num", sa.String(32), nullable=False),
            sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
        )
        version.create(conn)
        conn.execute(version.insert().values(version_num=HEAD))
    return True


def ensure_current(engine: sa.Engine, *, migrate: bool) -> None:
    """Migrate (embedded database) or refuse to run on a schema older than the code; a
    database that cannot be reached is a ``RegistryUnreachable`` naming it."""
    try:
        current = current_revision(engine)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        reason = str(e.orig or e).strip().splitlines()[0]
        raise RegistryUnreachable(
            f"cannot reach the registry database {engine.url.render_as_string()}: {reason}"
        ) from None
    if current == HEAD:
        return
    if migrate:
        if current is None and create_current(engine):
            return
        upgrade(engine)
        return
    head = head_revision()
    if current is not None and current not in {r.revision for r in _scripts().walk_revisions()}:
        raise SchemaOutOfDate(
            f"the registry database is at schema revision {current}, which this streamd does "
            f"not know (it needs {head}): the database was upgraded by a newer streamd; run "
            "that version, or restore a backup taken before its `streamd db upgrade`"
        )
    if current != head:
        raise SchemaOutOfDate(
            f"the registry database is at schema revision {current or 'none'}, this streamd "
            f"needs {head}: run `streamd db upgrade` (with the same --config/STREAMD_DATABASE_URL)"
        )

"""Migrations on every database: up from nothing, down to nothing and up again; the models
and the migrated schema never drift apart; a stale schema stops the server with the fix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from streamd.registry import (
    ImageRegistry,
    SchemaOutOfDate,
    ensure_current,
    make_engine,
    upgrade,
)
from streamd.registry.models import metadata as models_metadata
from streamd.registry.schema import (
    HEAD,
    create_current,
    current_revision,
    downgrade,
    head_revision,
)

TABLES = {"images", "image_properties", "image_tags", "image_members", "tasks", "image_locations",
          "leases", "metadef_namespaces", "metadef_resource_types",
          "metadef_namespace_resource_types", "metadef_properties", "metadef_objects",
          "metadef_tags"}


@pytest.fixture
def empty(empty_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def drift(engine: sa.Engine, metadata: sa.MetaData = models_metadata) -> list[object]:
    """What alembic's autogenerate would write to turn the database into ``metadata``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_upgrade_downgrade_upgrade(empty: sa.Engine) -> None:
    assert current_revision(empty) is None and tables(empty) == set()
    upgrade(empty)
    assert current_revision(empty) == head_revision()
    assert tables(empty) == TABLES
    downgrade(empty, "base")
    assert current_revision(empty) is None and tables(empty) == set()
    upgrade(empty, "0001")
    assert current_revision(empty) == "0001"
    upgrade(empty)
    assert current_revision(empty) == head_revision()
    assert drift(empty) == []


def test_each_step_down_and_up_keeps_data(empty: sa.Engine) -> None:
    upgrade(empty)
    image = ImageRegistry(empty).create({"name": "kept"}, {"k": "v"}, ["t"])
    downgrade(empty, "0001")
    upgrade(empty)
    assert ImageRegistry(empty).get(image.id) == image


def test_models_match_migrations(engine: sa.Engine) -> None:
    assert drift(engine) == []


def test_drift_would_be_seen(engine: sa.Engine) -> None:
    """The comparison above is live: a column or an index only in the models shows up."""
    changed = sa.MetaData(naming_convention=models_metadata.naming_convention)
    for table in models_metadata.sorted_tables:
        table.to_metadata(changed)
    images = changed.tables["images"]
    images.append_column(sa.Column("extra", sa.Integer, nullable=True))
    sa.Index("ix_images_extra", images.c.extra)
    assert {diff[0] for diff in drift(engine, changed)} == {"add_column", "add_index"}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_strings_have_binary_collation(engine: sa.Engine, backend: str, table: str) -> None:
    """Strings compare by code point whatever the database's default collation is.

    (alembic's comparison does not look at collations, hence this test.)
    """
    if backend == "sqlite":  # BINARY, i.e. code point order, unless a column says otherwise
        with engine.connect() as conn:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).scalar_one()
        assert "COLLATE" not in ddl.upper()
        return
    schema = "current_schema()" if backend == "postgresql" else "DATABASE()"
    with engine.connect() as conn:
        collations = dict(conn.execute(sa.text(
            "SELECT column_name, collation_name FROM information_schema.columns "
            f"WHERE table_schema = {schema} AND table_name = :table "
            "AND data_type IN ('character varying', 'text', 'varchar')"
        ), {"table": table}).all())
    assert collations
    assert set(collations.values()) == {"C" if backend == "postgresql" else "utf8mb4_bin"}


# -- refusing a stale schema --------------------------------------------------------------------


def test_empty_database_is_out_of_date(empty: sa.Engine) -> None:
    with pytest.raises(SchemaOutOfDate, match="`streamd db upgrade`") as raised:
        ensure_current(empty, migrate=False)
    assert "revision none" in str(raised.value)
    assert tables(empty) == set()


def test_older_revision_is_out_of_date(empty: sa.Engine) -> None:
    upgrade(empty, "0001")
    with pytest.raises(SchemaOutOfDate, match=r"at schema revision 0001.*`streamd db upgrade`"):
        ensure_current(empty, migrate=False)
    assert current_revision(empty) == "0001"


def test_current_schema_is_accepted(engine: sa.Engine) -> None:
    ensure_current(engine, migrate=False)


def test_migrate_brings_it_up(empty: sa.Engine) -> None:
    ensure_current(empty, migrate=True)
    assert current_revision(empty) == head_revision()
    ensure_current(empty, migrate=False)


def test_newer_revision_is_refused_with_its_own_reason(empty: sa.Engine) -> None:
    upgrade(empty)
    with empty.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'")
    with pytest.raises(SchemaOutOfDate, match="newer streamd"):
        ensure_current(empty, migrate=False)


def test_head_constant_is_the_migrations_head() -> None:
    from streamd.registry.schema import HEAD

    assert HEAD == head_revision()


def test_up_to_date_start_does_not_load_alembic(tmp_path) -> None:  # noqa: ANN001
    """alembic costs ~10 MiB of server RSS; a start on a current schema must not import it."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    upgrade(make_engine(url))
    code = (
        "import sys\n"
        "from streamd.registry import ensure_current, make_engine\n"
        f"ensure_current(make_engine({url!r}), migrate=True)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_empty_database_is_created_at_head_without_alembic(empty: sa.Engine) -> None:
    """The schema made from the models equals the migrated one, and alembic agrees on it."""
    assert create_current(empty)
    assert current_revision(empty) == HEAD == head_revision()
    assert tables(empty) == TABLES
    assert drift(empty) == []
    upgrade(empty)  # alembic finds nothing to do
    assert current_revision(empty) == HEAD
    ImageRegistry(empty).create({"name": "works"}, {}, [])
    assert not create_current(empty)  # never on a database that holds tables
    downgrade(empty, "base")  # and the migrations can take it from there
    assert tables(empty) == set()


def test_ensure_current_creates_an_empty_database_in_one_step(empty: sa.Engine) -> None:
    ensure_current(empty, migrate=True)
    assert current_revision(empty) == HEAD and tables(empty) == TABLES

"""image_locations, leases: several copies of an image's data; API nodes' claims on work

``image_locations`` holds every copy of an image's data, one per store (Glance's
multi-store); the image's single ``location``/``store`` columns move into it (an image with
a location becomes one copy, in the store its row named, or ``file`` — the one store a
server had before ``[stores]`` — when it named none) and go. ``leases`` holds what each API
node is working on (an upload, a stage, an import) until the lease it renews expires.

The columns are dropped with SQLite's own ``ALTER TABLE … DROP COLUMN`` (SQLite 3.35+),
not by the batch mode's copy of the table: that copy ends in ``DROP TABLE images``, which
with foreign keys on (streamd's connections turn them on, and a transaction cannot turn
them off) first deletes every row, cascading into properties, tags, members and the copies.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# the store of a location recorded without one: the file store every server had then
LEGACY_STORE = "file"


def _str(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Strings with binary collations (see streamd.registry.models.Str), frozen here."""
    if length is None:
        return sa.Text().with_variant(
            mysql.TEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        ).with_variant(postgresql.TEXT(collation="C"), "postgresql")
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "image_locations",
        sa.Column("image_id", _str(36), nullable=False),
        sa.Column("store", _str(255), nullable=False),
        sa.Column("location", _str(2048), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name="fk_image_locations_image_id_images",
        ),
        sa.PrimaryKeyConstraint("image_id", "store", name="pk_image_locations"),
    )
    op.create_index("ix_image_locations_store_image_id", "image_locations",
                    ["store", "image_id"])
    op.create_table(
        "leases",
        sa.Column("key", _str(255), nullable=False),
        sa.Column("holder", _str(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_leases"),
    )
    op.create_index("ix_leases_expires_at", "leases", ["expires_at"])

    images = sa.table("images", sa.column("id"), sa.column("location"), sa.column("store"),
                      sa.column("updated_at"))
    copies = sa.table("image_locations", sa.column("image_id"), sa.column("store"),
                      sa.column("location"), sa.column("created_at"))
    op.execute(copies.insert().from_select(
        ["image_id", "store", "location", "created_at"],
        sa.select(images.c.id, sa.func.coalesce(images.c.store, LEGACY_STORE),
                  images.c.location, images.c.updated_at)
        .where(images.c.location.is_not(None)),
    ))
    with op.batch_alter_table("images", recreate="never") as batch:
        batch.drop_column("location")
        batch.drop_column("store")


def downgrade() -> None:
    """Back to one location per image: the first copy (oldest, then by store) stays."""
    with op.batch_alter_table("images", recreate="never") as batch:
        batch.add_column(sa.Column("location", _str(2048), nullable=True))
        batch.add_column(sa.Column("store", _str(255), nullable=True))
    images = sa.table("images", sa.column("id"), sa.column("location"), sa.column("store"))
    copies = sa.table("image_locations", sa.column("image_id"), sa.column("store"),
                      sa.column("location"), sa.column("created_at"))

    def first(column: sa.ColumnClause[str]) -> sa.ScalarSelect[str]:
        return (sa.select(column).where(copies.c.image_id == images.c.id)
                .order_by(copies.c.created_at, copies.c.store).limit(1).scalar_subquery())

    op.execute(images.update().values(location=first(copies.c.location),
                                      store=first(copies.c.store)))
    op.drop_table("leases")
    op.drop_table("image_locations")

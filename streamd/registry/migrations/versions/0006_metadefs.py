"""metadef_*: metadata definitions (Glance's metadefs API)

Namespaces, the resource types they apply to (and with which property prefix), and their
properties, objects and tags. Everything of a namespace goes with it (ON DELETE CASCADE);
resource types stay.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _str(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Strings with binary collations (see streamd.registry.models.Str), frozen here."""
    if length is None:
        return sa.Text().with_variant(
            mysql.TEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        ).with_variant(postgresql.TEXT(collation="C"), "postgresql")
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _times() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=False)]


def _in_namespace(table: str) -> list[sa.schema.SchemaItem]:
    """A row of a namespace: its id, name and the constraints every such table has."""
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", _str(80), nullable=False),
        sa.ForeignKeyConstraint(["namespace_id"], ["metadef_namespaces.id"],
                                ondelete="CASCADE",
                                name=f"fk_{table}_namespace_id_metadef_namespaces"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.UniqueConstraint("namespace_id", "name", name=f"uq_{table}_namespace_id_name"),
    ]


def upgrade() -> None:
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", _str(80), nullable=False),
        sa.Column("display_name", _str(80), nullable=True),
        sa.Column("description", _str(), nullable=True),
        sa.Column("visibility", _str(32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", _str(255), nullable=True),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_metadef_namespaces"),
        sa.UniqueConstraint("namespace", name="uq_metadef_namespaces_namespace"),
    )
    op.create_index("ix_metadef_namespaces_created_at_id", "metadef_namespaces",
                    ["created_at", "id"])
    op.create_index("ix_metadef_namespaces_owner_created_at_id", "metadef_namespaces",
                    ["owner", "created_at", "id"])
    op.create_index("ix_metadef_namespaces_visibility_created_at_id", "metadef_namespaces",
                    ["visibility", "created_at", "id"])
    op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", _str(80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_metadef_resource_types"),
        sa.UniqueConstraint("name", name="uq_metadef_resource_types_name"),
    )
    op.create_table(
        "metadef_namespace_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("resource_type_id", sa.Integer(), nullable=False),
        sa.Column("prefix", _str(80), nullable=True),
        sa.Column("properties_target", _str(80), nullable=True),
        *_times(),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["metadef_namespaces.id"], ondelete="CASCADE",
            name="fk_metadef_ns_resource_types_namespace_id"),
        sa.ForeignKeyConstraint(
            ["resource_type_id"], ["metadef_resource_types.id"],
            name="fk_metadef_ns_resource_types_resource_type_id"),
        sa.PrimaryKeyConstraint("id", name="pk_metadef_namespace_resource_types"),
        sa.UniqueConstraint("namespace_id", "resource_type_id",
                            name="uq_metadef_ns_resource_types_namespace_id"),
    )
    op.create_index("ix_metadef_namespace_resource_types_resource_type_id",
                    "metadef_namespace_resource_types", ["resource_type_id", "namespace_id"])
    op.create_table(
        "metadef_properties",
        *_in_namespace("metadef_properties"),
        sa.Column("json_schema", _str(), nullable=False),
        *_times(),
    )
    op.create_table(
        "metadef_objects",
        *_in_namespace("metadef_objects"),
        sa.Column("description", _str(), nullable=True),
        sa.Column("required", _str(), nullable=True),
        sa.Column("json_schema", _str(), nullable=False),
        *_times(),
    )
    op.create_table("metadef_tags", *_in_namespace("metadef_tags"), *_times())


def downgrade() -> None:
    for table in ("metadef_tags", "metadef_objects", "metadef_properties",
                  "metadef_namespace_resource_types", "metadef_resource_types",
                  "metadef_namespaces"):
        op.drop_table(table)

"""images, image_properties, image_tags

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0001"
down_revision = None
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


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", _str(36), nullable=False),
        sa.Column("name", _str(255), nullable=True),
        sa.Column("status", _str(30), nullable=False),
        sa.Column("visibility", _str(20), nullable=False),
        sa.Column("owner", _str(255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("disk_format", _str(20), nullable=True),
        sa.Column("container_format", _str(20), nullable=True),
        sa.Column("checksum", _str(32), nullable=True),
        sa.Column("os_hash_algo", _str(64), nullable=True),
        sa.Column("os_hash_value", _str(128), nullable=True),
        sa.Column("xxh3", _str(32), nullable=True),
        sa.Column("location", _str(2048), nullable=True),
        sa.Column("store", _str(255), nullable=True),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
    )
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    op.create_index("ix_images_updated_at_id", "images", ["updated_at", "id"])
    op.create_index("ix_images_owner_created_at", "images", ["owner", "created_at"])
    op.create_index("ix_images_visibility_created_at", "images", ["visibility", "created_at"])
    op.create_index("ix_images_name", "images", ["name"])
    op.create_index("ix_images_status", "images", ["status"])
    op.create_index("ix_images_checksum", "images", ["checksum"])
    op.create_table(
        "image_properties",
        sa.Column("image_id", _str(36), nullable=False),
        sa.Column("name", _str(255), nullable=False),
        sa.Column("value", _str(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name="fk_image_properties_image_id_images",
        ),
        sa.PrimaryKeyConstraint("image_id", "name", name="pk_image_properties"),
    )
    op.create_index("ix_image_properties_name", "image_properties", ["name"])
    op.create_table(
        "image_tags",
        sa.Column("image_id", _str(36), nullable=False),
        sa.Column("value", _str(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name="fk_image_tags_image_id_images",
        ),
        sa.PrimaryKeyConstraint("image_id", "value", name="pk_image_tags"),
    )
    op.create_index("ix_image_tags_value", "image_tags", ["value"])


def downgrade() -> None:
    op.drop_table("image_tags")
    op.drop_table("image_properties")
    op.drop_table("images")

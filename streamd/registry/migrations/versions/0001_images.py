"""images, image_properties, image_tags

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("visibility", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("disk_format", sa.String(20), nullable=True),
        sa.Column("container_format", sa.String(20), nullable=True),
        sa.Column("checksum", sa.String(32), nullable=True),
        sa.Column("os_hash_algo", sa.String(64), nullable=True),
        sa.Column("os_hash_value", sa.String(128), nullable=True),
        sa.Column("xxh3", sa.String(32), nullable=True),
        sa.Column("location", sa.String(2048), nullable=True),
        sa.Column("store", sa.String(255), nullable=True),
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
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name="fk_image_properties_image_id_images",
        ),
        sa.PrimaryKeyConstraint("image_id", "name", name="pk_image_properties"),
    )
    op.create_index("ix_image_properties_name", "image_properties", ["name"])
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
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

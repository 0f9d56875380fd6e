"""image_members: the projects a shared image is offered to

One row per (image, member project) with the member's answer (pending, accepted,
rejected). The (member_id, status, image_id) index is the seek behind "images shared with
me" in a listing; the primary key serves the owner's member list and the show/download
check of one member.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _str(length: int) -> sa.types.TypeEngine[str]:
    """Strings with binary collations (see streamd.registry.models.Str), frozen here."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    ).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "image_members",
        sa.Column("image_id", _str(36), nullable=False),
        sa.Column("member_id", _str(255), nullable=False),
        sa.Column("status", _str(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE",
            name="fk_image_members_image_id_images",
        ),
        sa.PrimaryKeyConstraint("image_id", "member_id", name="pk_image_members"),
    )
    op.create_index(
        "ix_image_members_member_id_status_image_id", "image_members",
        ["member_id", "status", "image_id"],
    )


def downgrade() -> None:
    op.drop_table("image_members")

"""tasks: asynchronous operations (image imports) and how they ended

One row per task, as Glance's: type, status (pending, processing, success, failure), who
asked, the image it works on, its input and result as JSON, and the reason it failed. No
foreign key to images: a task outlives its image, as in Glance.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "0004"
down_revision = "0003"
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
        "tasks",
        sa.Column("id", _str(36), nullable=False),
        sa.Column("type", _str(30), nullable=False),
        sa.Column("status", _str(30), nullable=False),
        sa.Column("owner", _str(255), nullable=True),
        sa.Column("image_id", _str(36), nullable=True),
        sa.Column("user_id", _str(255), nullable=True),
        sa.Column("request_id", _str(64), nullable=True),
        sa.Column("input", _str(), nullable=False),
        sa.Column("result", _str(), nullable=True),
        sa.Column("message", _str(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_created_at_id", "tasks", ["created_at", "id"])
    op.create_index("ix_tasks_image_id_created_at", "tasks", ["image_id", "created_at"])
    op.create_index("ix_tasks_status", "tasks", ["status"])


def downgrade() -> None:
    op.drop_table("tasks")

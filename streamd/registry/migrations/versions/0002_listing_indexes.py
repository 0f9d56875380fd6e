"""listing indexes: (owner|visibility, created_at, id)

A non-admin page in the default order (created_at desc, id desc) is merged from a seek in
the viewer's own images and a seek in the public ones. With ``id`` in these indexes each
seek reads exactly the rows of its page, on every database (InnoDB appends the primary key
to secondary indexes by itself; SQLite and PostgreSQL do not).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_owner_created_at_id", "images", ["owner", "created_at", "id"])
    op.create_index(
        "ix_images_visibility_created_at_id", "images", ["visibility", "created_at", "id"]
    )
    op.drop_index("ix_images_owner_created_at", table_name="images")
    op.drop_index("ix_images_visibility_created_at", table_name="images")


def downgrade() -> None:
    op.create_index("ix_images_owner_created_at", "images", ["owner", "created_at"])
    op.create_index("ix_images_visibility_created_at", "images", ["visibility", "created_at"])
    op.drop_index("ix_images_owner_created_at_id", table_name="images")
    op.drop_index("ix_images_visibility_created_at_id", table_name="images")

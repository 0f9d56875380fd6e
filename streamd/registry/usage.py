"""What a project's images take up: the figures its quotas are checked against."""

from __future__ import annotations

import sqlalchemy as sa

from streamd.registry.connection import connect
from streamd.registry.models import images
from streamd.registry.records import Usage

# statuses of an image whose data is arriving now (Glance's image_count_uploading)
UPLOADING = ("saving", "uploading", "importing")


def project_usage(engine: sa.Engine, owner: str) -> Usage:
    """Count and bytes of the images ``owner`` owns, and how many are receiving data.

    One aggregate over the owner's rows (found through ``ix_images_owner_created_at_id``).
    """
    uploading = sa.case((images.c.status.in_(UPLOADING), 1), else_=0)
    with connect(engine) as conn:
        count, size, busy = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(images.c.size), 0),
                      sa.func.coalesce(sa.func.sum(uploading), 0))
            .where(images.c.owner == owner)
        ).one()
    return Usage(image_count=int(count), image_size_total=int(size),
                 image_count_uploading=int(busy))

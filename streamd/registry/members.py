"""Image members: the projects a ``shared`` image is offered to, and their answers.

A member row says "project ``member_id`` may use image ``image_id``" once its status is
``accepted``; ``pending`` (the owner's offer) and ``rejected`` rows still let the member show
and download the image, but keep it out of the member's default listing (see
``ImageRegistry.list``). Who may add, answer and remove is the service layer's business
(``streamd.policy``); this module only stores the rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from streamd.errors import Conflict, NotFound
from streamd.registry.connection import connect
from streamd.registry.images import utcnow
from streamd.registry.models import image_members as members
from streamd.registry.models import images
from streamd.registry.records import MemberRecord

MEMBER_STATUSES = ("pending", "accepted", "rejected")

_COLUMNS = (members.c.image_id, members.c.member_id, members.c.status, members.c.created_at,
            members.c.updated_at)


def _not_member(image_id: str, member_id: str) -> NotFound:
    return NotFound(f"{member_id} not found in the member list of the image {image_id}.")


class MemberRegistry:
    """The image_members table behind one engine. ``clock`` gives created_at/updated_at."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def find(self, image_id: str, member_id: str) -> MemberRecord | None:
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(
                members.c.image_id == image_id, members.c.member_id == member_id)).first()
        return None if row is None else MemberRecord(*row)

    def get(self, image_id: str, member_id: str) -> MemberRecord:
        member = self.find(image_id, member_id)
        if member is None:
            raise _not_member(image_id, member_id)
        return member

    def list(self, image_id: str) -> list[MemberRecord]:
        """The image's members in the order they were added."""
        with connect(self.engine) as conn:
            rows = conn.execute(sa.select(*_COLUMNS).where(members.c.image_id == image_id)
                                .order_by(members.c.created_at, members.c.member_id)).all()
        return [MemberRecord(*row) for row in rows]

    def count(self, image_id: str) -> int:
        with connect(self.engine) as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(members)
                                .where(members.c.image_id == image_id)).scalar_one()

    def add(self, image_id: str, member_id: str) -> MemberRecord:
        """Offer the image to ``member_id`` (status ``pending``); Conflict if already offered."""
        now = self.clock()
        try:
            with connect(self.engine, write=True) as conn:
                exists = conn.execute(sa.select(images.c.id).where(images.c.id == image_id)
                                      ).first()
                if exists is None:
                    raise NotFound(f"No image found with ID {image_id}")
                conn.execute(members.insert().values(
                    image_id=image_id, member_id=member_id, status="pending",
                    created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(f"Member {member_id} is duplicated for image {image_id}: it is "
                           "already a member") from None
        return MemberRecord(image_id, member_id, "pending", now, now)

    def set_status(self, image_id: str, member_id: str, status: str) -> MemberRecord:
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {status!r}")
        with connect(self.engine, write=True) as conn:
            result = conn.execute(members.update().where(
                members.c.image_id == image_id, members.c.member_id == member_id,
            ).values(status=status, updated_at=self.clock()))
            if result.rowcount == 0:
                raise _not_member(image_id, member_id)
        return self.get(image_id, member_id)

    def remove(self, image_id: str, member_id: str) -> None:
        with connect(self.engine, write=True) as conn:
            result = conn.execute(members.delete().where(
                members.c.image_id == image_id, members.c.member_id == member_id))
            if result.rowcount == 0:
                raise _not_member(image_id, member_id)

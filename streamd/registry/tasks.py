"""Tasks: asynchronous operations (image imports), their status and how they ended.

A task moves ``pending -> processing -> success | failure``; each change is conditional on
the status it leaves (``UPDATE … WHERE status IN …``), so a task that start-up marked failed
cannot be marked successful by a job that was still finishing. ``input`` and ``result`` are
JSON documents stored as text.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.registry.connection import connect
from streamd.registry.images import utcnow
from streamd.registry.models import tasks as tasks_t

TASK_STATUSES = ("pending", "processing", "success", "failure")
UNFINISHED = ("pending", "processing")
SORT_KEYS = ("id", "type", "status", "created_at", "updated_at")


@dataclass(frozen=True)
class TaskRecord:
    id: str
    type: str
    status: str
    owner: str | None
    image_id: str | None
    user_id: str | None
    request_id: str | None
    input: dict[str, Any]
    result: dict[str, Any] | None
    message: str
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class TaskQuery:
    """One page of tasks: ``owner`` None lists every project's."""

    owner: str | None = None
    status: str | None = None
    type: str | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    marker: str | None = None
    limit: int = 25


def _record(row: Any) -> TaskRecord:
    values = row._asdict()
    values["input"] = json.loads(values["input"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    return TaskRecord(**values)


_COLUMNS = tuple(tasks_t.c[name] for name in TaskRecord.__dataclass_fields__)


class TaskRegistry:
    """The tasks table behind one engine. ``clock`` gives created_at/updated_at."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def create(
        self,
        type: str,  # noqa: A002  (Glance's field name)
        *,
        owner: str | None,
        image_id: str | None,
        user_id: str | None,
        input: Mapping[str, Any],  # noqa: A002
        task_id: str | None = None,
        request_id: str | None = None,
    ) -> TaskRecord:
        now = self.clock()
        row = {
            "id": task_id or str(uuid.uuid4()), "type": type, "status": "pending",
            "owner": owner, "image_id": image_id, "user_id": user_id, "request_id": request_id,
            "input": json.dumps(input), "result": None, "message": "", "expires_at": None,
            "created_at": now, "updated_at": now,
        }
        with connect(self.engine, write=True) as conn:
            conn.execute(tasks_t.insert().values(**row))
        return self.get(row["id"])

    def get(self, task_id: str) -> TaskRecord:
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(tasks_t.c.id == task_id)).first()
        if row is None:
            raise NotFound(f"Could not find task {task_id}")
        return _record(row)

    def change(
        self,
        task_id: str,
        expected: Iterable[str],
        status: str,
        *,
        message: str | None = None,
        result: Mapping[str, Any] | None = None,
        expires_at: dt.datetime | None = None,
    ) -> TaskRecord:
        """Move a task from one of ``expected`` to ``status``; Conflict if it is elsewhere."""
        values: dict[str, Any] = {"status": status, "updated_at": self.clock()}
        if message is not None:
            values["message"] = message
        if result is not None:
            values["result"] = json.dumps(result)
        if expires_at is not None:
            values["expires_at"] = expires_at
        expected = tuple(expected)
        with connect(self.engine, write=True) as conn:
            done = conn.execute(tasks_t.update().where(
                tasks_t.c.id == task_id, tasks_t.c.status.in_(expected)).values(**values))
            if done.rowcount == 0:
                current = conn.execute(sa.select(tasks_t.c.status)
                                       .where(tasks_t.c.id == task_id)).scalar_one_or_none()
                if current is None:
                    raise NotFound(f"Could not find task {task_id}")
                raise Conflict(f"Task {task_id} is {current}, not {' or '.join(expected)}")
        return self.get(task_id)

    def fail_unfinished(self, message: str, expires_at: dt.datetime | None = None) -> int:
        """Mark every pending or processing task failed (start-up, after a crash)."""
        with connect(self.engine, write=True) as conn:
            done = conn.execute(tasks_t.update().where(tasks_t.c.status.in_(UNFINISHED))
                                .values(status="failure", message=message,
                                        expires_at=expires_at, updated_at=self.clock()))
        return done.rowcount

    def for_image(self, image_id: str) -> list[TaskRecord]:
        """The image's tasks, newest first."""
        with connect(self.engine) as conn:
            rows = conn.execute(sa.select(*_COLUMNS).where(tasks_t.c.image_id == image_id)
                                .order_by(tasks_t.c.created_at.desc(), tasks_t.c.id.desc()))
            return [_record(row) for row in rows]

    def list(self, query: TaskQuery) -> list[TaskRecord]:
        """One page in ``sort_key`` order (ties by id, in the same direction), after the
        marker."""
        if query.sort_key not in SORT_KEYS:
            raise BadRequest(f"Sort key supplied was not valid: use one of "
                             f"{', '.join(SORT_KEYS)}.")
        if query.sort_dir not in ("asc", "desc"):
            raise BadRequest("Sort direction supplied was not valid: use asc or desc.")
        if query.limit < 0:
            raise BadRequest(f"Invalid limit {query.limit}: use 0 or more.")
        key = tasks_t.c[query.sort_key]
        ascending = query.sort_dir == "asc"
        conds = []
        if query.owner is not None:
            conds.append(tasks_t.c.owner == query.owner)
        if query.status is not None:
            conds.append(tasks_t.c.status == query.status)
        if query.type is not None:
            conds.append(tasks_t.c.type == query.type)
        with connect(self.engine) as conn:
            if query.marker is not None:
                marker = conn.execute(sa.select(key, tasks_t.c.id).where(
                    tasks_t.c.id == query.marker, *conds)).first()
                if marker is None:
                    raise BadRequest(f"Invalid marker {query.marker}: no such task is visible.")
                value, marker_id = marker
                if ascending:
                    conds.append(sa.or_(key > value, sa.and_(key == value,
                                                             tasks_t.c.id > marker_id)))
                else:
                    conds.append(sa.or_(key < value, sa.and_(key == value,
                                                             tasks_t.c.id < marker_id)))
            order = (key.asc(), tasks_t.c.id.asc()) if ascending else (key.desc(),
                                                                       tasks_t.c.id.desc())
            rows = conn.execute(sa.select(*_COLUMNS).where(*conds).order_by(*order)
                                .limit(query.limit))
            return [_record(row) for row in rows]

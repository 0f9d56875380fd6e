"""``GET /v2/tasks`` and ``GET /v2/tasks/{id}``: asynchronous operations, as Glance shows
them (admins only, Glance's default ``tasks_api_access``); ``POST /v2/tasks``, Glance's
legacy ``import`` task; and the raw form Glance uses for ``GET /v2/images/{id}/tasks``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from quart import Blueprint, Response, request

from streamd.http.bodies import json_body, json_response, listing_body
from streamd.http.context import context, runtime
from streamd.http.image_view import timestamp
from streamd.registry.tasks import TaskRecord
from streamd.service import legacy_import, tasks

bp = Blueprint("tasks", __name__)

TASKS_PATH = "/v2/tasks"
TASK_BODY = ('a task: {"type": "import", "input": {"import_from": URL, '
             '"import_from_format": "qcow2", "image_properties": {…}}}')


def _when(moment: dt.datetime | None) -> str | None:
    return None if moment is None else timestamp(moment)


def task_summary(task: TaskRecord) -> dict[str, Any]:
    """A task in a listing (no input, result or message, as Glance)."""
    return {
        "id": task.id, "type": task.type, "status": task.status, "owner": task.owner,
        "created_at": timestamp(task.created_at), "updated_at": timestamp(task.updated_at),
        "self": f"{TASKS_PATH}/{task.id}", "schema": "/v2/schemas/task",
        "expires_at": _when(task.expires_at),
    }


def task_view(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id, "input": task.input, "type": task.type, "status": task.status,
        "owner": task.owner, "message": task.message, "result": task.result,
        "created_at": timestamp(task.created_at), "updated_at": timestamp(task.updated_at),
        "self": f"{TASKS_PATH}/{task.id}", "schema": "/v2/schemas/task",
        "image_id": task.image_id, "request_id": task.request_id, "user_id": task.user_id,
        "expires_at": _when(task.expires_at),
    }


def _raw_time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def image_task_view(task: TaskRecord) -> dict[str, Any]:
    """A task as ``GET /v2/images/{id}/tasks`` shows it: Glance returns its database row."""
    return {
        "id": task.id, "type": task.type, "status": task.status, "owner": task.owner,
        "expires_at": _raw_time(task.expires_at), "created_at": _raw_time(task.created_at),
        "updated_at": _raw_time(task.updated_at), "deleted_at": None, "deleted": False,
        "image_id": task.image_id, "request_id": task.request_id, "user_id": task.user_id,
        "input": task.input, "result": task.result, "message": task.message,
    }


@bp.get(TASKS_PATH)
async def index() -> Response:
    params = list(request.args.items(multi=True))
    page = await tasks.list_tasks(runtime(), context(), params)
    return json_response(listing_body(
        TASKS_PATH, "tasks", [task_summary(task) for task in page.tasks], page.next_marker,
        params, "/v2/schemas/tasks"))


@bp.post(TASKS_PATH)
async def create() -> Response:
    """Glance's legacy ``import`` task (``streamd.service.legacy_import``): 201."""
    ctx = context()
    legacy_import.ensure_may_create(ctx)
    task = await legacy_import.create_task(runtime(), ctx, await json_body(TASK_BODY))
    # as Glance's answer to a new task: no image_id, no expires_at yet
    view = {k: v for k, v in task_view(task).items()
            if not (k in ("image_id", "expires_at") and v is None)}
    return json_response(view, status=201)


@bp.get(f"{TASKS_PATH}/<task_id>")
async def show(task_id: str) -> Response:
    return json_response(task_view(await tasks.show_task(runtime(), context(), task_id)))

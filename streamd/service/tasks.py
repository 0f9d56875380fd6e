"""Reading tasks: ``/v2/tasks`` (admins only, as Glance's default ``tasks_api_access``
policy) and an image's tasks (anyone who may see the image)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden
from streamd.registry.tasks import TASK_STATUSES, TaskQuery, TaskRecord
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskRecord]
    next_marker: str | None


def _ensure_tasks_access(ctx: RequestContext) -> None:
    if not ctx.is_admin:
        raise Forbidden("You are not authorized to complete tasks_api_access action.")


async def show_task(rt: Runtime, ctx: RequestContext, task_id: str) -> TaskRecord:
    _ensure_tasks_access(ctx)
    return await rt.db(rt.tasks.get, task_id)


async def list_tasks(rt: Runtime, ctx: RequestContext,
                     params: Sequence[tuple[str, str]]) -> TaskPage:
    """One page of tasks, newest first unless sorted otherwise (Glance's parameters:
    ``limit``, ``marker``, ``sort_key``, ``sort_dir``, ``status``, ``type``)."""
    _ensure_tasks_access(ctx)
    settings = rt.settings
    values = dict(params)
    for name in values:
        if name not in ("limit", "marker", "sort_key", "sort_dir", "status", "type"):
            raise BadRequest(f"Unknown parameter {name!r}: use limit, marker, sort_key, "
                             "sort_dir, status or type.")
    try:
        limit = int(values.get("limit", settings.limit_param_default))
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    status = values.get("status")
    if status is not None and status not in TASK_STATUSES:
        raise BadRequest(f"Invalid status value: {status}")
    query = TaskQuery(status=status, type=values.get("type"),
                      sort_key=values.get("sort_key", "created_at"),
                      sort_dir=values.get("sort_dir", "desc"), marker=values.get("marker"),
                      limit=min(limit, settings.api_limit_max) + 1)
    found = await rt.db(rt.tasks.list, query)
    page = found[: query.limit - 1]
    more = len(found) > len(page)
    return TaskPage(page, page[-1].id if more and page else None)


async def image_tasks(rt: Runtime, ctx: RequestContext, image_id: str) -> list[TaskRecord]:
    await visible_image(rt, ctx, image_id)
    return await rt.db(rt.tasks.for_image, image_id)

"""``POST /v2/tasks``: Glance's legacy ``import`` task (admins only, as Glance's default
``tasks_api_access``).

Before the interoperable import (``POST /v2/images/{id}/import``) Glance imported an image
with a task: ``{"type": "import", "input": {"import_from": URL, "import_from_format": …,
"image_properties": {…}}}``. The task is created (201, ``pending``) and then, in the
server's nursery: the image is created from ``image_properties`` (an empty dict means
``qcow2``/``bare``, as Glance), its data fetched from ``import_from`` by a web-download
import (``streamd.service.imports``: the same URI filters, caps, quotas and format
inspection), and the task ends ``success`` with ``result.image_id``, or ``failure`` with the
reason, the image removed (Glance reverts the image too).

As Glance 33, the URI is checked when the task is created: a scheme other than http(s),
``file:`` URIs, and a host or port the filters refuse (one that does not resolve included)
are 400. Where streamd differs, on purpose:

- ``api_image_import`` and ``location_import`` tasks are only made by ``POST …/import``
  and ``POST …/locations``: asked for here they are 400 (Glance creates them and they fail);
- a missing ``import_from_format`` or ``image_properties`` is 400 (Glance creates the task
  and it fails with "Task failed due to Internal Error");
- a host that resolves to a private, loopback or link-local address is 400 as for
  web-download (Glance's legacy task fetches it);
- a failed task says why ("Uploading the image failed due to: …"; Glance's flow mostly says
  "Task failed due to Internal Error"); the web-download import it ran is listed among the
  image's tasks while the image exists.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import trio

from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden, NotFound, StreamdError
from streamd.io.url_filter import SourceUnavailable, UriRefused
from streamd.registry.tasks import UNFINISHED, TaskRecord
from streamd.request_ids import current_request_id
from streamd.service import images, imports
from streamd.service.runtime import Runtime

log = logging.getLogger(__name__)

TASK_TYPE = "import"
GLANCE_TASK_TYPES = ("import", "api_image_import", "location_import")  # the task schema's enum
REQUIRED_INPUT = ("import_from", "import_from_format", "image_properties")
DEFAULT_PROPERTIES = {"disk_format": "qcow2", "container_format": "bare"}  # as Glance's


def ensure_may_create(ctx: RequestContext) -> None:
    """403 for a non-admin, before its body is read (Glance checks in its deserializer)."""
    if not ctx.is_admin:
        raise Forbidden("You are not authorized to complete tasks_api_access action.")


async def create_task(rt: Runtime, ctx: RequestContext, body: Any) -> TaskRecord:
    """Check a ``POST /v2/tasks`` body, create the task and start it; 400 before any change."""
    ensure_may_create(ctx)
    task_input = _checked_input(body)
    uri = task_input["import_from"]
    await _check_uri(rt, uri)
    task = await rt.db(rt.tasks.create, TASK_TYPE, owner=ctx.project_id, image_id=None,
                       user_id=ctx.user_id, task_id=str(uuid.uuid4()),
                       request_id=current_request_id(),
                       input=dict(task_input))
    rt.nursery.start_soon(_run, rt, ctx, task.id, uri, dict(task_input["image_properties"]))
    log.info("TASK %s import from %s", task.id, uri)
    return task


def _checked_input(body: Any) -> Mapping[str, Any]:
    """The task's ``input``, checked as Glance's deserializer and legacy import check it."""
    if not isinstance(body, Mapping) or "type" not in body:
        raise BadRequest("Task 'type' is required")
    if "input" not in body:
        raise BadRequest("Task 'input' is required")
    unknown = sorted(set(body) - {"type", "input"})
    if unknown:
        raise BadRequest(f"Provided object does not match schema 'task': unknown attribute(s) "
                         f"{', '.join(unknown)}: a task is created from 'type' and 'input'.")
    task_type, task_input = body["type"], body["input"]
    if task_type not in GLANCE_TASK_TYPES:
        raise BadRequest(f"Provided object does not match schema 'task': {task_type!r} is not "
                         f"one of {list(GLANCE_TASK_TYPES)}")
    if task_input is not None and not isinstance(task_input, Mapping):
        raise BadRequest(f"Provided object does not match schema 'task': {task_input!r} is "
                         "not of type 'null', 'object'")
    if task_type != TASK_TYPE:
        raise BadRequest(f"Tasks of type {task_type!r} are created by the API they belong "
                         "to (POST /v2/images/{id}/import or …/locations); POST /v2/tasks "
                         "creates 'import' tasks only.")
    task_input = task_input or {}
    uri = task_input.get("import_from")
    if not uri:
        raise BadRequest(f"Invalid location: {uri}")
    if not isinstance(uri, str):
        raise BadRequest(f"Invalid location: {uri!r}: import_from must be an http(s) URL")
    for key in REQUIRED_INPUT:
        if key not in task_input:
            raise BadRequest(f"Input does not contain '{key}' field")
    if not isinstance(task_input["image_properties"], Mapping):
        raise BadRequest("Input field 'image_properties' must be an object of image fields, "
                         'e.g. {"name": "cirros", "disk_format": "qcow2", '
                         '"container_format": "bare"}')
    return task_input


async def _check_uri(rt: Runtime, uri: str) -> None:
    """Glance's legacy checks (http(s) only; never files), then web-download's filters."""
    if uri.startswith(("file:///", "filesystem:///")):
        raise BadRequest("File based imports are not allowed. Please use a non-local source "
                         "of image data.")
    if not uri.startswith(("http://", "https://")):
        raise BadRequest("The given uri is not valid. Please specify a valid uri from the "
                         "following list of supported uri ['http', 'https']")
    refused = f"URI for legacy import task does not pass filtering: {uri}"
    rules = imports.uri_filter(rt.settings)
    try:
        await rules.address_for(rules.check(uri))
    except UriRefused as exc:
        raise BadRequest(f"{refused}: {exc.message}") from None
    except SourceUnavailable as exc:  # Glance's filter resolves the host too
        raise BadRequest(f"{refused}: {exc.message}") from None


async def _run(rt: Runtime, ctx: RequestContext, task_id: str, uri: str,
               properties: dict[str, Any]) -> None:
    """Create the image, import its data, close the task. Never raises but for cancellation
    (a server stopping: start-up repair fails the task)."""
    image_id: str | None = None
    try:
        await rt.db(rt.tasks.change, task_id, ["pending"], "processing")
        image = await images.create_image(rt, ctx, properties or DEFAULT_PROPERTIES)
        image_id = image.id
        import_task = await imports.start_import(
            rt, ctx, image_id, {"method": {"name": "web-download", "uri": uri}})
        await rt.jobs.wait(image_id)
        if import_task is not None:
            import_task = await rt.db(rt.tasks.get, import_task.id)
            if import_task.status != "success":
                raise _ImportFailed(import_task.message or "the import did not finish")
    except Exception as exc:
        reason = exc.message if isinstance(exc, StreamdError) else str(exc)
        if not isinstance(exc, StreamdError):
            log.exception("legacy import task %s failed", task_id)
        with trio.CancelScope(shield=True):
            if image_id is not None:
                await _remove(rt, ctx, image_id)
            await _close(rt, task_id, "failure",
                         f"Uploading the image failed due to: {reason}", None)
        return
    await _close(rt, task_id, "success", "", {"image_id": image_id})


class _ImportFailed(StreamdError):
    """The web-download import behind a legacy task failed (its task says why)."""


async def _remove(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    try:
        await images.delete_image(rt, ctx, image_id)
    except NotFound:
        pass
    except Exception:
        log.exception("could not remove image %s of a failed legacy import", image_id)


async def _close(rt: Runtime, task_id: str, status: str, message: str,
                 result: dict[str, Any] | None) -> None:
    try:
        await rt.db(rt.tasks.change, task_id, UNFINISHED, status, message=message,
                    result=result, expires_at=rt.tasks.clock() + imports.TASK_TIME_TO_LIVE)
    except Exception:
        log.exception("could not close legacy import task %s", task_id)
    log.info("TASK %s %s%s", task_id, status, f": {message}" if message else "")

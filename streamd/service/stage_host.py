"""Which node holds an image's staged data, and sending an import of it to that node.

Staged data lives in the staging area of the node that received it (``data_dir/staging``):
API nodes share the registry and the stores, not their disks. As Glance does, the node that
stages data records itself on the image (``os_glance_stage_host`` = its
``worker_self_reference_url``), and a node asked for a glance-direct import of an image
staged on another node replays the request there, with the caller's identity headers
(``RequestContext.identity_headers``), and answers what that node answered: the import job
then runs where the data is. Glance does the same
(``glance.api.v2.images.ImagesController._proxy_request_to_host``): a 2xx is passed on, an
error keeps its status, a stage host that cannot be reached is 504, any other failure to
talk to it 502.

A request cannot bounce between nodes: only the node recorded (by its URL, or by its
``node_id`` in ``os_glance_stage_node``) handles it, every other one forwards it there. A
node whose URL changed (restarted on another port) still knows its stages by its id, and
records its new URL on them at start-up (``streamd.service.repair``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamd import request_ids
from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import StreamdError
from streamd.registry import ImageRecord

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

STAGE_HOST = "os_glance_stage_host"
# streamd's own: the node_id of that node, which outlives a change of its URL (a restart on
# another port or address), so that a node still knows its stages as its own
STAGE_NODE = "os_glance_stage_node"
HIDDEN = (STAGE_HOST, STAGE_NODE)  # never shown to clients (Glance hides its stage host)
# seconds for the stage host to answer (Glance's proxy timeout): it only checks the request
# and starts a job, the data moves after the answer
PROXY_TIMEOUT = 60.0


class StageHostError(StreamdError):
    """The stage host's own error answer, passed on with its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StageHostUnavailable(StreamdError):
    """The stage host did not answer (504) or did not answer HTTP (502); retry later, or
    stage the data again through another node."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def stage_marks(settings: Settings) -> dict[str, str]:
    """The properties by which a node records itself on an image it stages data for."""
    return {STAGE_HOST: settings.self_url, STAGE_NODE: settings.node}


def staged_elsewhere(settings: Settings, image: ImageRecord) -> str | None:
    """The URL of the node holding ``image``'s staged data when that is not this node;
    None when it is this one (by URL or by node id) or nobody recorded one."""
    host = image.properties.get(STAGE_HOST, "").rstrip("/")
    if not host or host == settings.self_url or image.properties.get(STAGE_NODE) == settings.node:
        return None
    return host


async def forward_import(
    ctx: RequestContext, host: str, image_id: str, body: Mapping[str, Any], *,
    store_header: str | None, client: httpx.AsyncClient | None = None,
) -> None:
    """Replay ``POST /v2/images/{image_id}/import`` with ``body`` on ``host``; return when it
    accepted it (2xx), raise its error otherwise. ``client`` is for tests (a transport)."""
    headers = dict(ctx.identity_headers)
    if store_header is not None:
        headers["X-Image-Meta-Store"] = store_header
    # the task the other node records carries this request's id
    if (request_id := request_ids.current_request_id()) is not None:
        headers[request_ids.HEADER] = request_id
    url = f"{host}/v2/images/{image_id}/import"
    log.info("IMPORT image=%s staged on %s: forwarding the request there", image_id, host)
    import httpx  # here, not at the top: a server that never calls out does not load it
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=PROXY_TIMEOUT, follow_redirects=False) as own:
                response = await own.post(url, json=dict(body), headers=headers)
        else:
            response = await client.post(url, json=dict(body), headers=headers)
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        log.warning("IMPORT image=%s: stage host %s unreachable: %s", image_id, host, exc)
        raise StageHostUnavailable(
            f"Image {image_id} is staged on {host}, which is unavailable; retry later, or "
            "stage the data again (PUT …/stage without Content-Range) through this node.",
            status=504) from None
    except httpx.HTTPError as exc:
        log.warning("IMPORT image=%s: stage host %s failed: %s", image_id, host, exc)
        raise StageHostUnavailable(
            f"Image {image_id} is staged on {host}, which failed to answer the import "
            "request; retry later.", status=502) from None
    if response.is_success:
        return
    raise StageHostError(response.status_code, _message(response))


def _message(response: httpx.Response) -> str:
    """The error message in a streamd (or Glance) JSON answer, else its status phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"status {response.status_code}"
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else response.reason_phrase

"""Image sharing use cases: offer a ``shared`` image to projects, answer, list, withdraw.

The owner (or an admin) adds a project as a member of a shared image; the member entry starts
``pending``. The member accepts or rejects it (``PUT …/members/{member_id}``) — only the member
itself, or an admin, may answer. Whatever the answer, the member may show and download the
image; only ``accepted`` images appear in its default listing (``member_status`` asks for the
others). Who may do what is ``streamd.policy``'s; every refusal happens before any write.

The JSON Schemas of a member and a member list are here, below the HTTP layer that serves
them (``/v2/schemas/member(s)``), as for images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, NotFound, TooLarge
from streamd.registry import MEMBER_STATUSES, MemberRecord
from streamd.service.access import visible_image
from streamd.service.runtime import Runtime

log = logging.getLogger("streamd.members")

MEMBER_ID_MAX = 255  # the registry's column; Glance's too

_UUID = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
MEMBER_SCHEMA: dict[str, Any] = {
    "name": "member",
    "properties": {
        "member_id": {"type": "string",
                      "description": "An identifier for the image member (tenantId)"},
        "image_id": {"type": "string", "description": "An identifier for the image",
                     "pattern": _UUID},
        "created_at": {"type": "string",
                       "description": "Date and time of image member creation"},
        "updated_at": {"type": "string",
                       "description": "Date and time of last modification of image member"},
        "status": {"type": "string", "description": "The status of this image member",
                   "enum": list(MEMBER_STATUSES)},
        "schema": {"readOnly": True, "type": "string"},
    },
}
MEMBERS_SCHEMA: dict[str, Any] = {
    "name": "members",
    "properties": {
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "schema": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}


def _object(body: Any, example: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise BadRequest(f"The request body must be a JSON object, e.g. {example}.")
    return body


async def add_member(
    rt: Runtime, ctx: RequestContext, image_id: str, body: Any
) -> MemberRecord:
    """Offer a shared image to the project ``body["member"]``; its entry starts pending."""
    body = _object(body, '{"member": "PROJECT_ID"}')
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_may_manage_members(ctx, image, "add members")
    if "member" not in body:
        raise BadRequest('Member to be added not specified: send {"member": "PROJECT_ID"}.')
    member_id = body["member"]
    if not isinstance(member_id, str):
        raise BadRequest(f"Member must be a project id (a string), not {member_id!r}.")
    if not member_id.strip():
        raise BadRequest("Member can't be empty: send the id of the project to share with.")
    if len(member_id) > MEMBER_ID_MAX:
        raise BadRequest(f"Member '{member_id[:32]}…' is {len(member_id)} characters long; "
                         f"project ids are at most {MEMBER_ID_MAX}.")
    quota = rt.settings.image_member_quota
    count = await rt.db(rt.members.count, image_id)
    if count >= quota:
        raise TooLarge(f"Image {image_id} already has {count} members, the limit "
                       f"(image_member_quota is {quota}): remove one before adding another.")
    member = await rt.db(rt.members.add, image_id, member_id)
    log.info("MEMBER ADD image=%s member=%s", image_id, member_id)
    return member


async def list_members(rt: Runtime, ctx: RequestContext, image_id: str) -> list[MemberRecord]:
    """All members for the owner and admins; a member sees only its own entry."""
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_shared(image, "list members")
    members = await rt.db(rt.members.list, image_id)
    return [m for m in members if policy.can_see_member(ctx, image, m.member_id)]


async def show_member(
    rt: Runtime, ctx: RequestContext, image_id: str, member_id: str
) -> MemberRecord:
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_shared(image, "show members")
    if not policy.can_see_member(ctx, image, member_id):
        raise _not_member(image_id, member_id)
    return await rt.db(rt.members.get, image_id, member_id)


async def update_member(
    rt: Runtime, ctx: RequestContext, image_id: str, member_id: str, body: Any
) -> MemberRecord:
    """The member's answer to the offer: ``{"status": "accepted"|"rejected"|"pending"}``."""
    body = _object(body, '{"status": "accepted"}')
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_shared(image, "update members")
    policy.ensure_may_answer(ctx, image, member_id)
    if "status" not in body:
        raise BadRequest('Status not specified: send {"status": "accepted"} (or "rejected", '
                         '"pending").')
    status = body["status"]
    if status not in MEMBER_STATUSES:
        raise BadRequest('Incorrect request: Status must be "pending", "accepted" or '
                         f'"rejected", not {status!r}.')
    member = await rt.db(rt.members.set_status, image_id, member_id, status)
    log.info("MEMBER STATUS image=%s member=%s status=%s", image_id, member_id, status)
    return member


async def remove_member(
    rt: Runtime, ctx: RequestContext, image_id: str, member_id: str
) -> None:
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_may_manage_members(ctx, image, "remove members")
    await rt.db(rt.members.remove, image_id, member_id)
    log.info("MEMBER REMOVE image=%s member=%s", image_id, member_id)


def _not_member(image_id: str, member_id: str) -> NotFound:
    return NotFound(f"{member_id} not found in the member list of the image {image_id}.")

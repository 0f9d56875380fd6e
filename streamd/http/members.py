"""Image sharing routes: ``/v2/images/{id}/members`` and ``…/members/{member_id}``.

``POST`` (owner: offer a shared image to a project) and ``GET`` the list;
``GET``/``PUT``/``DELETE`` one member (``PUT``: the member's answer). Each maps onto one use case
in ``streamd.service.members``; a member is written as Glance writes it.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from streamd.http.bodies import json_body, json_response, no_content
from streamd.http.context import context, runtime
from streamd.http.image_view import timestamp
from streamd.registry import MemberRecord
from streamd.service import members

bp = Blueprint("members", __name__)

MEMBER_SCHEMA_PATH = "/v2/schemas/member"
MEMBERS_SCHEMA_PATH = "/v2/schemas/members"


def member_view(member: MemberRecord) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "image_id": member.image_id,
        "status": member.status,
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": MEMBER_SCHEMA_PATH,
    }


@bp.post("/v2/images/<image_id>/members")
async def create(image_id: str) -> Response:
    body = await json_body('{"member": "PROJECT_ID"}')
    member = await members.add_member(runtime(), context(), image_id, body)
    return json_response(member_view(member))


@bp.get("/v2/images/<image_id>/members")
async def index(image_id: str) -> Response:
    found = await members.list_members(runtime(), context(), image_id)
    return json_response({"members": [member_view(m) for m in found],
                          "schema": MEMBERS_SCHEMA_PATH})


@bp.get("/v2/images/<image_id>/members/<member_id>")
async def show(image_id: str, member_id: str) -> Response:
    member = await members.show_member(runtime(), context(), image_id, member_id)
    return json_response(member_view(member))


@bp.put("/v2/images/<image_id>/members/<member_id>")
async def update(image_id: str, member_id: str) -> Response:
    body = await json_body('{"status": "accepted"}')
    member = await members.update_member(runtime(), context(), image_id, member_id, body)
    return json_response(member_view(member))


@bp.delete("/v2/images/<image_id>/members/<member_id>")
async def delete(image_id: str, member_id: str) -> Response:
    await members.remove_member(runtime(), context(), image_id, member_id)
    return no_content()

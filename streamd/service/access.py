"""The registry lookups behind ``streamd.policy``'s decisions about one image.

Whether a project may see a ``shared`` image depends on its member entry, which lives in
another table; ``visible_image`` fetches it only when the answer depends on it (a
non-admin, non-owner caller and a shared image), so an owner's or an admin's request costs
one registry call as before.
"""

from __future__ import annotations

from streamd import policy
from streamd.context import RequestContext
from streamd.registry.records import ImageRecord, MemberRecord
from streamd.service.runtime import Runtime


async def membership(rt: Runtime, ctx: RequestContext, image: ImageRecord) -> MemberRecord | None:
    """The caller's member entry of ``image`` when its access depends on one, else None."""
    if not policy.needs_membership(ctx, image):
        return None
    assert ctx.project_id is not None
    return await rt.db(rt.members.find, image.id, ctx.project_id)


async def visible_image(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    """The image, if the caller may see it; NotFound (as for a missing image) otherwise."""
    image = rt.registry.get_in_loop(image_id)  # SQLite, when that needs no wait
    if image is None:
        image = await rt.db(rt.registry.get, image_id)
    policy.ensure_visible(ctx, image, await membership(rt, ctx, image))
    return image

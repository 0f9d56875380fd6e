"""Who may see and do what with an image: every such decision, in one place.

The rules are Glance's defaults: admins see and change everything; a project sees its own
images and the public and community ones, and changes only its own. An image you may not
see does not exist for you (404, so ids of private images do not leak); an image you may see
but not change answers 403. Image members (``shared`` images offered to other projects) will
extend ``can_see`` here.
"""

from __future__ import annotations

from streamd.context import RequestContext
from streamd.errors import Forbidden, NotFound
from streamd.registry.records import ImageRecord, Viewer

# Visibilities anyone may see, owner or not.
OPEN_VISIBILITIES = ("public", "community")


def viewer(ctx: RequestContext) -> Viewer:
    """The registry's view of the caller, for listings."""
    return Viewer(project_id=ctx.project_id, is_admin=ctx.is_admin)


def owns(ctx: RequestContext, image: ImageRecord) -> bool:
    return ctx.project_id is not None and image.owner == ctx.project_id


def can_see(ctx: RequestContext, image: ImageRecord) -> bool:
    return ctx.is_admin or owns(ctx, image) or image.visibility in OPEN_VISIBILITIES


def can_modify(ctx: RequestContext, image: ImageRecord) -> bool:
    return ctx.is_admin or owns(ctx, image)


def ensure_visible(ctx: RequestContext, image: ImageRecord) -> None:
    """404, worded as for a missing image, when the caller may not see ``image``."""
    if not can_see(ctx, image):
        raise NotFound(f"No image found with ID {image.id}")


def ensure_modifiable(ctx: RequestContext, image: ImageRecord, action: str) -> None:
    """404 if the caller cannot see the image, 403 if they see it but it is not theirs."""
    ensure_visible(ctx, image)
    if not can_modify(ctx, image):
        raise Forbidden(
            f"You may not {action} image {image.id}: it belongs to another project. "
            "Only its owner or an admin may change it."
        )


def ensure_may_own(ctx: RequestContext, owner: str | None) -> None:
    """A new image belongs to the caller's project; only admins create images for others."""
    if ctx.is_admin:
        return
    if ctx.project_id is None:
        raise Forbidden("Creating an image needs a project: send X-Project-Id (or a token "
                        "scoped to a project).")
    if owner != ctx.project_id:
        raise Forbidden(f"You are not permitted to create images owned by '{owner}': "
                        f"leave 'owner' out or set it to your project '{ctx.project_id}'.")


def ensure_may_change_owner(ctx: RequestContext) -> None:
    if not ctx.is_admin:
        raise Forbidden("Owner can't be updated by non admin: only an admin may move an "
                        "image to another project.")


def ensure_may_set_visibility(ctx: RequestContext, visibility: object) -> None:
    """Publishing to every project is an admin decision (Glance's ``publicize_image``)."""
    if visibility == "public" and not ctx.is_admin:
        raise Forbidden("Only an admin may make an image public (publicize_image); use "
                        "'shared', 'private' or 'community' instead.")

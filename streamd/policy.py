"""Who may see and do what with an image: every such decision, in one place.

The rules are Glance's defaults:

- **See** (show, download, use as a listing marker): admins see everything; a project sees
  its own images, every ``public`` and ``community`` image, the ``shared`` images offered to
  it (whatever it answered: pending, accepted or rejected) and, as in Glance, images without
  an owner. The rule is stated once, as ``streamd.registry.records.Viewer``, because the
  registry applies it too (a listing's marker, and in SQL the listing itself); the functions
  here ask it. An image you may not see does not exist for you: 404, worded as for a missing
  image, so the ids of private images do not leak.
- **Write** (create, change, share, answer an offer): Glance 33's secure RBAC — a caller
  needs the ``member`` (or ``admin``) role; a ``reader`` reads (403 otherwise).
  Downloading data counts as writing here: Glance 33's ``download_image`` rule needs
  ``member`` too, so a reader sees an image but gets 403 for its data (asked of Glance 33).
  ``enforce_secure_rbac = false`` restores the legacy rules, where any role writes.
- **Change** (update, delete, tag, upload): the owner and admins; anyone else who can see
  the image gets 403. Publishing (``public``) is for admins only; an owner may make its image
  ``community``, ``shared`` or ``private``. Only admins change an image's owner.
- **Members**: only ``shared`` images have members (403 for the others). The owner (or an
  admin) adds and removes them; a member answers the offer (pending, accepted, rejected) and
  only for itself — the owner may not answer for it (admins may). A member sees only its own
  member entry; the owner sees them all.
- **Deactivate / reactivate**: admins and members of the owning project (Glance 33's default,
  ``role:admin or (role:member and project_id:%(owner)s)``), and only between ``active`` and
  ``deactivated``; a deactivated image's data is served to admins only.
- **Copies in several stores**: copying an image to more stores (copy-image) and removing
  one store's copy are for admins only (Glance's ``copy_image``, ``delete_image_location``).
- **Protected properties**: custom property names matched by ``protected_properties`` are
  set, changed and removed by admins only.

Listings apply the same visibility rule in the registry's query (``viewer``).
"""

from __future__ import annotations

from collections.abc import Iterable

from streamd.context import RequestContext
from streamd.errors import Forbidden, NotFound
from streamd.registry.records import ImageRecord, MemberRecord, Viewer

# The roles that create and change images under Glance 33's secure RBAC defaults.
WRITER_ROLES = frozenset({"admin", "member"})
# The statuses an image moves between with the deactivate/reactivate actions.
ACTIVATION = {"deactivate": ("active", "deactivated"), "reactivate": ("deactivated", "active")}


def viewer(ctx: RequestContext) -> Viewer:
    """The caller as the visibility rule (and the registry's listings) know it."""
    return Viewer(project_id=ctx.project_id, is_admin=ctx.is_admin)


def needs_membership(ctx: RequestContext, image: ImageRecord) -> bool:
    """Does seeing ``image`` depend on whether the caller is one of its members?"""
    return viewer(ctx).needs_membership(image)


def can_see(ctx: RequestContext, image: ImageRecord, member: MemberRecord | None = None) -> bool:
    """``member`` is the caller's member entry of ``image``, if it has one."""
    return viewer(ctx).sees(
        image, is_member=member is not None and member.member_id == ctx.project_id)


def can_modify(ctx: RequestContext, image: ImageRecord) -> bool:
    return ctx.is_admin or viewer(ctx).owns(image)


def ensure_visible(
    ctx: RequestContext, image: ImageRecord, member: MemberRecord | None = None
) -> None:
    """404, worded as for a missing image, when the caller may not see ``image``."""
    if not can_see(ctx, image, member):
        raise NotFound(f"No image found with ID {image.id}")


def may_write(ctx: RequestContext) -> bool:
    """Does the caller hold a role that writes? Glance 33's secure RBAC: ``member`` or
    ``admin`` (a ``reader``, or a token with other roles only, reads); under the legacy rules
    (``enforce_secure_rbac = false``) any caller does."""
    return not ctx.secure_rbac or bool(ctx.roles & WRITER_ROLES)


def ensure_writer(ctx: RequestContext, action: str) -> None:
    """403 for a caller without a role that writes (see ``may_write``)."""
    if not may_write(ctx):
        roles = ", ".join(sorted(ctx.roles)) or "none"
        raise Forbidden(f"You are not authorized to {action}: it needs the member role (your "
                        f"roles: {roles}). As in Glance 33, a reader reads and a member "
                        "writes (enforce_secure_rbac).")


def ensure_may_download(ctx: RequestContext, image: ImageRecord) -> None:
    """403 for a caller who sees ``image`` but holds no role that writes (see ``may_write``):
    Glance 33's ``download_image`` rule asks for ``member``, not ``reader``."""
    ensure_writer(ctx, f"download the data of image {image.id}")


def ensure_modifiable(ctx: RequestContext, image: ImageRecord, action: str) -> None:
    """403 unless the caller owns ``image`` (or is an admin) with a role that writes; call on
    a visible image."""
    ensure_writer(ctx, f"{action} image {image.id}")
    if not can_modify(ctx, image):
        raise Forbidden(
            f"You may not {action} image {image.id}: it belongs to another project. "
            "Only its owner or an admin may change it."
        )


def ensure_may_own(ctx: RequestContext, owner: str | None) -> None:
    """A new image belongs to the caller's project; only admins create images for others."""
    if ctx.is_admin:
        return
    ensure_writer(ctx, "create images (add_image)")
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


# -- members -----------------------------------------------------------------------------------


def ensure_shared(image: ImageRecord, action: str) -> None:
    """Members belong to ``shared`` images only (403, as Glance, for the others)."""
    if image.visibility != "shared":
        raise Forbidden(f"Not allowed to {action} for image {image.id}: only shared images "
                        f"have members, and this one is {image.visibility}. The owner may "
                        "make it shared first (PATCH replace /visibility shared).")


def ensure_may_manage_members(ctx: RequestContext, image: ImageRecord, action: str) -> None:
    """Adding and removing members is for the image's owner (and admins), as a member."""
    ensure_writer(ctx, f"{action} of image {image.id}")
    if not can_modify(ctx, image):
        raise Forbidden(f"You are not authorized to {action} of image {image.id}: only its "
                        "owner (or an admin) adds and removes members.")
    ensure_shared(image, action)


def can_see_member(ctx: RequestContext, image: ImageRecord, member_id: str) -> bool:
    """The owner and admins see every member entry; a member only its own."""
    return can_modify(ctx, image) or member_id == ctx.project_id


def ensure_may_answer(ctx: RequestContext, image: ImageRecord, member_id: str) -> None:
    """Only the member itself (or an admin) accepts or rejects an offer, with a role that
    writes."""
    if ctx.is_admin:
        return
    if member_id == ctx.project_id:
        ensure_writer(ctx, f"answer the offer of image {image.id}")
        return
    if can_modify(ctx, image):
        raise Forbidden(f"You are not authorized to change the status of member {member_id}: "
                        "only the member project itself accepts or rejects an image offered "
                        "to it.")
    raise NotFound(f"{member_id} not found in the member list of the image {image.id}.")


# -- deactivate / reactivate -------------------------------------------------------------------


def ensure_may_change_activation(ctx: RequestContext, image: ImageRecord, action: str) -> None:
    """Glance 33's default rule: an admin, or a ``member`` of the owning project; and only
    ``active`` <-> ``deactivated`` (403 otherwise, as Glance).

    Anyone else who sees the image gets 403, as from Glance."""
    if not ctx.is_admin and not (viewer(ctx).owns(image) and "member" in ctx.roles):
        raise Forbidden(f"You are not authorized to complete {action} action: it needs the "
                        "member role in the image's project (or admin).")
    allowed = ACTIVATION[action]
    if image.status not in allowed:
        raise Forbidden(f"Not allowed to {action} image in status '{image.status}': only "
                        f"{' or '.join(allowed)} images can be {action}d.")


# -- copies of the data (multi-store) ----------------------------------------------------------


def ensure_may_delete_copy(ctx: RequestContext, image: ImageRecord) -> None:
    """Removing one store's copy (``DELETE /v2/stores/{store}/{image}``) is for admins, as
    Glance's default ``delete_image_location`` (``rule:context_is_admin``): owners too get
    403 there, and delete the whole image instead."""
    if not ctx.is_admin:
        raise Forbidden("You are not authorized to complete delete_image_location action.")


# -- protected properties ----------------------------------------------------------------------


def is_protected_property(name: str, patterns: Iterable[str]) -> bool:
    """Does a ``protected_properties`` entry (a name, or a prefix ending in ``*``) match?"""
    for pattern in patterns:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def ensure_may_write_property(
    ctx: RequestContext, name: str, patterns: Iterable[str], action: str = "set"
) -> None:
    if not ctx.is_admin and is_protected_property(name, patterns):
        raise Forbidden(f"Property '{name}' is protected: only an admin may {action} it "
                        "(protected_properties).")

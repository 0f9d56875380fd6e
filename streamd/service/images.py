"""The image metadata use cases: create, show, list, update, delete, tag, (de)activate.

Each takes the caller's ``RequestContext`` and the ``Runtime`` and checks everything — the
image schema, read-only and reserved fields, who may do it (``streamd.policy``), protected
properties, quotas — before the registry is asked to change anything, so a refused request
leaves no trace. Registry calls are blocking and run in worker threads through ``Runtime.db``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import trio

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden, TooLarge
from streamd.registry.records import ImageQuery, ImageRecord
from streamd.service import imports, listing, quotas, transfers
from streamd.service.access import visible_image
from streamd.service.image_patch import PATCH_V21, apply_patch, parse_patch
from streamd.service.image_schema import WRITABLE_CORE, check_writable, validate_document
from streamd.service.runtime import Runtime

log = logging.getLogger("streamd.images")

# Core columns a client may set on create (tags and custom properties travel separately).
_CREATE_CORE = tuple(name for name in WRITABLE_CORE if name != "tags")


async def create_image(rt: Runtime, ctx: RequestContext, body: Mapping[str, Any]) -> ImageRecord:
    """Register a new, empty (``queued``) image owned by the caller's project."""
    if not isinstance(body, Mapping):
        raise BadRequest("The request body must be a JSON object of image fields, e.g. "
                         '{"name": "cirros", "disk_format": "qcow2", "container_format": '
                         '"bare"}.')
    for name in body:
        if name != "id":  # a client may choose the new image's id
            check_writable(name)
    validate_document(body)
    owner = body.get("owner", ctx.project_id)
    policy.ensure_may_own(ctx, owner)
    policy.ensure_may_set_visibility(ctx, body.get("visibility"))
    values = {name: body[name] for name in _CREATE_CORE if name in body}
    values["owner"] = owner
    properties = {k: v for k, v in body.items() if k not in WRITABLE_CORE and k != "id"}
    for name in properties:
        policy.ensure_may_write_property(ctx, name, rt.settings.protected_properties)
    _ensure_within_limits(rt, properties, properties, set(body.get("tags", ())))
    await quotas.ensure_may_create(rt, owner)
    image = await rt.db(rt.registry.create, values, properties, body.get("tags", ()),
                        body.get("id"))
    log.info("CREATE image=%s owner=%s", image.id, image.owner)
    return image


async def show_image(rt: Runtime, ctx: RequestContext, image_id: str) -> ImageRecord:
    return await visible_image(rt, ctx, image_id)


# Pages of more than BIG_PAGE images are read and rendered BIG_PAGES at a time. Each is a
# few MiB of rows, records, views and JSON while it is built, and all of that is CPU under
# one GIL, so eight at once were no faster than two but left their peak in the heap: 8
# clients each listing 1000 images, five times, took the idle server from 73 to 99 MiB RSS
# (its peak kept by fragmentation; malloc_trim gave back 5), 87 MiB one page at a time, in
# the same time. The bench's uploads after its metadata runs peaked 101-102 MiB on that.
BIG_PAGE = 100
BIG_PAGES = 2
_big_pages: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("big_pages")


@contextlib.asynccontextmanager
async def listed_images(
    rt: Runtime, ctx: RequestContext, params: Sequence[tuple[str, str]]
) -> AsyncIterator[listing.Page]:
    """One page of the images the caller may see (``next_marker`` only when more follow),
    for a caller that renders it inside the block: a big page holds one of ``BIG_PAGES``
    slots until its rendering is done."""
    request = listing.parse_listing(params, ctx, rt.settings)  # policy.viewer: who sees what
    if request.limit <= BIG_PAGE:
        yield await _page(rt, request)
        return
    try:
        limiter = _big_pages.get()
    except LookupError:  # the first big page of this trio run
        limiter = trio.CapacityLimiter(BIG_PAGES)
        _big_pages.set(limiter)
    async with limiter:
        yield await _page(rt, request)


async def _page(rt: Runtime, request: listing.Listing) -> listing.Page:
    """The registry is asked for one image more than the page holds: that one's existence
    is what says a next page exists, so clients never fetch a last, empty page."""
    if request.limit == 0:
        if request.query.marker is not None:  # still a 400 for a bad marker
            await rt.db(rt.registry.list, _with_limit(request.query, 1))
        return listing.Page([], None)
    found = await rt.db(rt.registry.list, _with_limit(request.query, request.limit + 1))
    images = found[: request.limit]
    more = len(found) > request.limit
    return listing.Page(images, images[-1].id if more else None)


def _with_limit(query: ImageQuery, limit: int) -> ImageQuery:
    return replace(query, limit=limit)


async def update_image(
    rt: Runtime, ctx: RequestContext, image_id: str, patch: Any, media_type: str = PATCH_V21
) -> ImageRecord:
    """Apply a JSON patch (already parsed from JSON) to an image's metadata."""
    ops = parse_patch(patch, media_type)
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, image, "update")
    for op in ops:
        if op.name not in WRITABLE_CORE:
            action = "remove" if op.op == "remove" else "set"
            policy.ensure_may_write_property(ctx, op.name, rt.settings.protected_properties,
                                             action)
    changes = apply_patch(ctx, image, ops)
    if changes.empty:
        return image
    after = {**image.properties, **changes.set_properties}
    for name in changes.remove_properties:
        after.pop(name, None)
    _ensure_within_limits(rt, after, changes.set_properties,
                          set(image.tags if changes.tags is None else changes.tags),
                          grown=len(after) > len(image.properties))
    updated = await rt.db(
        rt.registry.update, image_id, changes.values, changes.set_properties,
        changes.remove_properties, changes.tags,
    )
    log.info("UPDATE image=%s fields=%s", image_id,
             ",".join([*changes.values, *changes.set_properties, *changes.remove_properties,
                       *(["tags"] if changes.tags is not None else [])]))
    return updated


def _ensure_within_limits(rt: Runtime, properties: Mapping[str, Any],
                          written: Mapping[str, Any], tags: set[str], *,
                          grown: bool = True) -> None:
    """Glance's per-image limits (413): ``image_property_quota`` custom properties (checked
    only when a change adds some, so an image over a lowered quota can still shrink),
    ``image_tag_quota`` tags, and ``image_property_value_max`` bytes in each value
    ``written``."""
    settings = rt.settings
    if grown and len(properties) > settings.image_property_quota:
        raise TooLarge(_exceeded("properties", len(properties), settings.image_property_quota))
    if len(tags) > settings.image_tag_quota:
        raise TooLarge(_exceeded("tags", len(tags), settings.image_tag_quota))
    for name, value in written.items():
        size = len(value.encode()) if isinstance(value, str) else 0
        if size > settings.image_property_value_max:
            raise TooLarge(f"The value of property '{name[:64]}' is {size} bytes long; the "
                           f"limit is {settings.image_property_value_max} "
                           "(image_property_value_max).")


def _exceeded(what: str, attempted: int, maximum: int) -> str:
    """Glance's words, and the setting that sets the limit."""
    setting = {"properties": "image_property_quota", "tags": "image_tag_quota"}[what]
    return (f"The limit has been exceeded on the number of allowed image {what}. "
            f"Attempted: {attempted}, Maximum: {maximum} ({setting}).")


async def delete_image(rt: Runtime, ctx: RequestContext, image_id: str) -> None:
    """Delete an image the caller owns (or any, for admins) unless it is protected."""
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, image, "delete")
    if image.protected:
        raise Forbidden(f"Image {image_id} is protected and cannot be deleted; first set "
                        "protected to false (PATCH replace /protected false).")
    await _delete_data(rt, image)
    await rt.db(rt.registry.delete, image_id)
    if rt.cache is not None:  # this node's entry; other nodes drop theirs at next use
        await rt.cache.cache.drop(image_id)
    log.info("DELETE image=%s", image_id)


async def _delete_data(rt: Runtime, image: ImageRecord) -> None:
    """Remove the image's bytes from their store: the one place image deletion touches data.

    Runs before the registry row goes, so a failure leaves a still-listed image that can be
    deleted again rather than data nobody can find.
    """
    await transfers.delete_data(rt, image)
    await imports.forget_image(rt, image)  # its import job and staged data


async def add_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, image, "tag")
    if len(tag) > 255:
        raise BadRequest(f"Tag '{tag[:32]}…' is {len(tag)} characters long; the limit is 255.")
    quota = rt.settings.image_tag_quota
    if tag not in image.tags and len(image.tags) + 1 > quota:
        raise TooLarge(f"Image tag limit exceeded for image {image_id}: "
                       f"{_exceeded('tags', len(image.tags) + 1, quota)}")
    await rt.db(rt.registry.add_tag, image_id, tag)


async def remove_tag(rt: Runtime, ctx: RequestContext, image_id: str, tag: str) -> None:
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, image, "untag")
    await rt.db(rt.registry.remove_tag, image_id, tag)


async def change_activation(rt: Runtime, ctx: RequestContext, image_id: str, action: str) -> None:
    """``deactivate`` (active -> deactivated) or ``reactivate`` (back); admins and members
    of the owning project (``policy.ensure_may_change_activation``).

    Repeating one is a no-op, as in Glance. The change is conditional on the status read,
    so a concurrent upload or deletion makes it a 409 instead of a lost update.
    """
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_may_change_activation(ctx, image, action)
    before, after = policy.ACTIVATION[action]
    if image.status == after:
        return
    await rt.db(rt.registry.transition, image_id, before, after)
    log.info("%s image=%s", action.upper(), image_id)

"""The image metadata routes of the Image API v2.

``POST/GET /v2/images``, ``GET/PATCH/DELETE /v2/images/{id}``,
``PUT/DELETE /v2/images/{id}/tags/{tag}`` and
``POST /v2/images/{id}/actions/deactivate|reactivate``. Each maps the request onto one use
case in ``streamd.service.images`` and its result onto Glance's status codes and JSON; the
image data routes (``…/file``) are raw ASGI handlers elsewhere. A PATCH goes through
``streamd.service.locations``, which carries out its ``/locations`` ops (if any) and hands
the rest on; with ``show_multiple_locations`` images show their ``locations``.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from streamd.errors import UnsupportedMediaType
from streamd.http.bodies import json_response, no_content, parse_json
from streamd.http.context import context, runtime
from streamd.http.image_view import image_view, images_view
from streamd.registry.records import ImageRecord
from streamd.service import images, imports, locations
from streamd.service.image_patch import MEDIA_TYPES

bp = Blueprint("images", __name__)


IMAGE_FIELDS = "the image fields as a JSON document"


async def _json_body() -> Any:
    return parse_json(await request.get_data(as_text=False), IMAGE_FIELDS)


def _parse_json(data: bytes) -> Any:
    return parse_json(data, IMAGE_FIELDS)


def _view(image: ImageRecord, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """``image_view``, with ``locations`` when the settings show them (Glance's
    ``show_multiple_locations``; glanceclient's location calls read them)."""
    body = image_view(image) if body is None else body
    shown = locations.shown_locations(runtime(), context(), image)
    if shown is not None:
        body["locations"] = shown
    return body


@bp.post("/v2/images")
async def create() -> Response:
    image = await images.create_image(runtime(), context(), await _json_body())
    # the id is a UUID (image_schema checks a client's), the host h11 has validated: ASCII
    headers = {"Location": f"{request.host_url.rstrip('/')}/v2/images/{image.id}"}
    methods = imports.enabled_methods(runtime())
    if methods:  # as Glance, which announces how the new image's data may be imported
        headers["OpenStack-image-import-methods"] = ",".join(methods)
    headers["OpenStack-image-store-ids"] = ",".join(runtime().stores.ids)  # as Glance
    return json_response(_view(image), 201, headers)


@bp.get("/v2/images")
async def index() -> Response:
    params = list(request.args.items(multi=True))
    async with images.listed_images(runtime(), context(), params) as page:
        body = images_view(page, params)
        for image, view in zip(page.images, body["images"], strict=True):
            _view(image, view)
        return json_response(body)


@bp.get("/v2/images/<image_id>")
async def show(image_id: str) -> Response:
    return json_response(_view(await images.show_image(runtime(), context(), image_id)))


@bp.patch("/v2/images/<image_id>")
async def update(image_id: str) -> Response:
    # Read the body even when refusing it: answering before the body is consumed can leave
    # hypercorn's keep-alive connection stuck, and the client's next request hangs.
    data = await request.get_data(as_text=False)
    media_type = request.mimetype
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"The request media type {media_type or '(none)'!r} is not supported: image PATCH "
            f"expects Content-Type one of: {', '.join(MEDIA_TYPES)}.",
            headers={"Accept-Patch": ", ".join(MEDIA_TYPES)},
        )
    patch = _parse_json(data)
    image = await locations.update_image(runtime(), context(), image_id, patch, media_type)
    return json_response(_view(image))


@bp.delete("/v2/images/<image_id>")
async def delete(image_id: str) -> Response:
    await images.delete_image(runtime(), context(), image_id)
    return no_content()


@bp.put("/v2/images/<image_id>/tags/<tag>")
async def add_tag(image_id: str, tag: str) -> Response:
    await images.add_tag(runtime(), context(), image_id, tag)
    return no_content()


@bp.delete("/v2/images/<image_id>/tags/<tag>")
async def remove_tag(image_id: str, tag: str) -> Response:
    await images.remove_tag(runtime(), context(), image_id, tag)
    return no_content()


@bp.post("/v2/images/<image_id>/actions/deactivate")
async def deactivate(image_id: str) -> Response:
    await images.change_activation(runtime(), context(), image_id, "deactivate")
    return no_content()


@bp.post("/v2/images/<image_id>/actions/reactivate")
async def reactivate(image_id: str) -> Response:
    await images.change_activation(runtime(), context(), image_id, "reactivate")
    return no_content()

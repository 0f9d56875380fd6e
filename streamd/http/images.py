"""The image metadata routes of the Image API v2.

``POST/GET /v2/images``, ``GET/PATCH/DELETE /v2/images/{id}`` and
``PUT/DELETE /v2/images/{id}/tags/{tag}``. Each maps the request onto one use case in
``streamd.service.images`` and its result onto Glance's status codes and JSON; the image
data routes (``…/file``) are raw ASGI handlers elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request

from streamd.errors import BadRequest, UnsupportedMediaType
from streamd.http.context import context, runtime
from streamd.http.image_view import image_view, images_view
from streamd.service import images
from streamd.service.image_patch import MEDIA_TYPES

bp = Blueprint("images", __name__)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def _no_content() -> Response:
    response = Response(b"", status=204)
    del response.headers["Content-Type"]
    return response


async def _json_body() -> Any:
    return _parse_json(await request.get_data(as_text=False))


def _parse_json(data: bytes) -> Any:
    """The request body as JSON; 400 with the parser's position when it is not JSON."""
    if not data.strip():
        raise BadRequest("Body expected in request: send the image fields as a JSON document.")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise BadRequest("Malformed JSON in request body: it is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"Malformed JSON in request body: {e.msg} at line {e.lineno} "
                         f"column {e.colno}.") from None


@bp.post("/v2/images")
async def create() -> Response:
    image = await images.create_image(runtime(), context(), await _json_body())
    location = f"{request.host_url.rstrip('/')}/v2/images/{image.id}"
    return _json(image_view(image), 201, {"Location": location})


@bp.get("/v2/images")
async def index() -> Response:
    params = list(request.args.items(multi=True))
    page = await images.list_images(runtime(), context(), params)
    return _json(images_view(page, params))


@bp.get("/v2/images/<image_id>")
async def show(image_id: str) -> Response:
    return _json(image_view(await images.show_image(runtime(), context(), image_id)))


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
    image = await images.update_image(runtime(), context(), image_id, patch, media_type)
    return _json(image_view(image))


@bp.delete("/v2/images/<image_id>")
async def delete(image_id: str) -> Response:
    await images.delete_image(runtime(), context(), image_id)
    return _no_content()


@bp.put("/v2/images/<image_id>/tags/<tag>")
async def add_tag(image_id: str, tag: str) -> Response:
    await images.add_tag(runtime(), context(), image_id, tag)
    return _no_content()


@bp.delete("/v2/images/<image_id>/tags/<tag>")
async def remove_tag(image_id: str, tag: str) -> Response:
    await images.remove_tag(runtime(), context(), image_id, tag)
    return _no_content()

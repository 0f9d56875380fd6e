"""Images as Glance's clients expect to read them: the JSON of one image and of a listing page.

Every core field is present, null or not (clients index them directly); custom properties
sit at the top level beside them; ``self``/``file``/``schema`` are the image's links; times
are whole-second UTC (``2024-01-31T12:00:00Z``). ``stores`` names the stores that hold the
data (Glance's multi-store). Internal columns — the data's locations, the ``xxh3`` digest —
never leave the server, nor does the node that holds an image's stage (Glance hides
``os_glance_stage_host`` too; ``streamd.service.stage_host.HIDDEN``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from streamd.http.bodies import listing_body
from streamd.registry.records import ImageRecord
from streamd.service.listing import Page
from streamd.service.stage_host import HIDDEN

# Glance's order, which people diffing the two servers' output will recognise.
CORE_FIELDS = ("name", "disk_format", "container_format", "visibility", "size", "virtual_size",
               "status", "checksum", "protected", "min_ram", "min_disk", "owner", "os_hidden",
               "os_hash_algo", "os_hash_value", "id")
IMAGES_PATH = "/v2/images"


def timestamp(moment: dt.datetime) -> str:
    """Registry times are naive UTC; Glance writes them ISO 8601 with a ``Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(image: ImageRecord) -> dict[str, Any]:
    body: dict[str, Any] = dict(image.properties)  # Glance puts custom properties first
    for name in HIDDEN:
        body.pop(name, None)
    for name in CORE_FIELDS:
        body[name] = getattr(image, name)
    body["created_at"] = timestamp(image.created_at)
    body["updated_at"] = timestamp(image.updated_at)
    body["tags"] = list(image.tags)
    body["self"] = f"{IMAGES_PATH}/{image.id}"
    body["file"] = f"{IMAGES_PATH}/{image.id}/file"
    body["schema"] = "/v2/schemas/image"
    if image.locations and image.status in ("active", "deactivated"):
        body["stores"] = ",".join(image.stores)  # as Glance: where the data is, once it is
    return body


def images_view(page: Page, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A listing page of images (``listing_body``)."""
    return listing_body(IMAGES_PATH, "images", [image_view(image) for image in page.images],
                        page.next_marker, params, "/v2/schemas/images")

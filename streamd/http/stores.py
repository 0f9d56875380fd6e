"""``DELETE /v2/stores/{store_id}/{image_id}``: remove one store's copy of an image's data.

Glance's answers (``streamd.service.copies.delete_from_store`` decides them): 204 with no
body; 409 for a store this node does not have; 403 for callers who are not admins and for
the only copy; 409 unless the image is active; 404 when that store has no copy.
"""

from __future__ import annotations

from quart import Blueprint, Response

from streamd.http.bodies import no_content
from streamd.http.context import context, runtime
from streamd.service import copies

bp = Blueprint("stores", __name__)


@bp.delete("/v2/stores/<store_id>/<image_id>")
async def delete_from_store(store_id: str, image_id: str) -> Response:
    await copies.delete_from_store(runtime(), context(), store_id, image_id)
    return no_content()

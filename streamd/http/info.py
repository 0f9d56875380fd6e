"""``GET /v2/info/usage`` (the caller's project's quota usage) and ``GET /v2/info/stores``
(``/detail``: admins), in Glance's shapes.

``{"usage": {"image_size_total": {"limit": L, "usage": U}, "image_stage_total": …,
"image_count_total": …, "image_count_uploading": …}}``; sizes in MiB, ``-1``: no limit
(``streamd.service.quotas``).
"""

from __future__ import annotations

from quart import Blueprint, Response

from streamd.http.bodies import json_response
from streamd.http.context import context, runtime
from streamd.service import quotas, stores

bp = Blueprint("info", __name__)


@bp.get("/v2/info/usage")
async def usage() -> Response:
    report = await quotas.usage_report(runtime(), context())
    return json_response({"usage": {name: {"limit": q.limit, "usage": q.usage}
                                    for name, q in report.items()}})


@bp.get("/v2/info/stores")
async def store_list() -> Response:
    return json_response({"stores": stores.describe(runtime().stores, detail=False)})


@bp.get("/v2/info/stores/detail")
async def store_detail() -> Response:
    return json_response({"stores": stores.describe(runtime().stores, detail=True, ctx=context())})

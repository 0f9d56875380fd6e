"""``GET /`` (300) and ``GET /versions`` (200): the version document clients discover."""

from __future__ import annotations

from quart import Blueprint, Response, json, request

bp = Blueprint("versions", __name__)

CURRENT = 18  # v2.18: the minor version Glance 33 reports as CURRENT


def versions_document(base_url: str) -> dict[str, list[dict[str, object]]]:
    href = base_url.rstrip("/") + "/v2/"
    return {
        "versions": [
            {
                "id": f"v2.{minor}",
                "status": "CURRENT" if minor == CURRENT else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for minor in range(CURRENT, -1, -1)
        ]
    }


def _respond(status: int) -> Response:
    body = json.dumps(versions_document(request.host_url))
    return Response(body, status=status, content_type="application/json")


@bp.get("/")
async def root() -> Response:
    return _respond(300)


@bp.get("/versions")
async def versions() -> Response:
    return _respond(200)


@bp.get("/v2/")
@bp.get("/v2")
async def v2() -> Response:
    return _respond(300)

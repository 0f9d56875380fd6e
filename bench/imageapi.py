"""The Image API v2 calls the workloads make, on the load client.

Each call checks its status code and raises :class:`ApiError` naming the call, the status
and the start of the body, so a server that misbehaves stops the workload with a reason
instead of producing a throughput figure for error pages.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench.loadclient import HttpClient, Response, Sink


class ApiError(Exception):
    """An Image API call did not answer what the API reference says it answers."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _check(resp: Response, expected: tuple[int, ...], what: str) -> Response:
    if resp.status not in expected:
        body = resp.body[:300].decode("utf-8", "replace")
        raise ApiError(f"{what}: HTTP {resp.status} (expected {expected}): {body}", resp.status)
    return resp


RETRIES = 10  # for metadata calls answered 500/503 (Glance on SQLite: "database is locked")
RETRY_PAUSE = 0.05  # seconds, doubled per retry up to MAX_PAUSE
MAX_PAUSE = 1.0


class ImageApi:
    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.retried = 0  # metadata requests answered 500/503 and sent again

    async def _meta(self, method: str, path: str, headers: dict[str, str] | None = None,
                    body: bytes | None = None) -> Response:
        """A small request, retried on 500/503: a figure should not die on one busy DB."""
        pause = RETRY_PAUSE
        for _ in range(RETRIES):
            resp = await self.client.request(method, path, headers, body=body)
            if resp.status not in (500, 503):
                break
            self.retried += 1
            await asyncio.sleep(pause)
            pause = min(2 * pause, MAX_PAUSE)
        return resp

    async def create(self, name: str, disk_format: str = "raw",
                     container_format: str = "bare") -> str:
        doc = {"name": name, "disk_format": disk_format, "container_format": container_format}
        resp = await self._meta("POST", "/v2/images", {"Content-Type": "application/json"},
                                body=json.dumps(doc).encode())
        return str(_check(resp, (201,), "create image").json()["id"])

    async def upload(self, image_id: str, path: Path) -> Response:
        resp = await self.client.request(
            "PUT", f"/v2/images/{image_id}/file",
            {"Content-Type": "application/octet-stream"}, upload=path,
        )
        return _check(resp, (204,), f"upload {path.name}")

    async def download(self, image_id: str, sink: Sink | None = None,
                       byte_range: tuple[int, int] | None = None,
                       max_body: int | None = None) -> Response:
        headers = {}
        expected: tuple[int, ...] = (200,)
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
            expected = (206,)
        resp = await self.client.request(
            "GET", f"/v2/images/{image_id}/file", headers, sink=sink, collect=False,
            max_body=max_body,
        )
        return _check(resp, expected, "download")

    async def show(self, image_id: str) -> dict[str, Any]:
        resp = await self._meta("GET", f"/v2/images/{image_id}")
        return dict(_check(resp, (200,), "show image").json())

    async def delete(self, image_id: str) -> None:
        resp = await self._meta("DELETE", f"/v2/images/{image_id}")
        if resp.status == 400 and b"from deleted" in resp.body:
            return  # Glance: an earlier try answered 500 but did delete it
        _check(resp, (204, 404), "delete image")

    async def list_page(self, path: str) -> tuple[list[dict[str, Any]], str | None, Response]:
        """One page: its images, the ``next`` link (a path) when there is one, the response."""
        resp = _check(await self._meta("GET", path), (200,), "list images")
        doc = resp.json()
        return list(doc["images"]), doc.get("next"), resp

    async def list_all(self, limit: int = 1000, owner: str | None = None) -> list[dict[str, Any]]:
        """Every listed image, following ``next``; only those of ``owner`` when given."""
        out: list[dict[str, Any]] = []
        path: str | None = f"/v2/images?limit={limit}"
        while path:
            images, path, _ = await self.list_page(path)
            out += [i for i in images if owner is None or i.get("owner") == owner]
        return out

    async def list_all_ids(self, limit: int = 1000, owner: str | None = None) -> list[str]:
        """The ids of :meth:`list_all` but those Glance lists after a half-failed delete."""
        return [i["id"] for i in await self.list_all(limit, owner) if i["status"] != "deleted"]

"""The Image API as this client uses it: one ``httpx.AsyncClient`` per server.

Plain Image API v2 calls (images, tags, file, stage, import) plus streamd's transfer
extensions when the server offers them (``GET /v2/info/streamd``: staging in parts, extents).
Every non-2xx answer becomes ``ApiError`` carrying the server's message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from streamd.sparse import Extent

# httpcore reads a response 64 KiB at a time, and each read is a trip through h11 and trio
# that costs more than the bytes; it has no option for this, only the class attribute. With
# 1 MiB reads 1 GiB of data over 4 connections took 2.9 s instead of 3.9 (loopback, here).
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 1024 * 1024

TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # a part of tens of MiB on a slow link
# images fields the server sets: never sent when an image is created elsewhere
READ_ONLY = frozenset({
    "status", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "created_at",
    "updated_at", "file", "self", "schema", "direct_url", "locations", "owner", "stores",
})


class ApiError(Exception):
    """An answer that is not 2xx: ``status`` and what the server said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Extents:
    """What ``GET /v2/images/{id}/extents`` says: the runs, whether zeros are known, and the
    xxh3-128 the server recorded for the data (None: it has none)."""

    runs: list[Extent]
    zero_runs_known: bool
    xxh3: str | None


@dataclass(frozen=True)
class Staged:
    """What a server has staged for an image: ranges (END exclusive) of ``total`` bytes."""

    ranges: tuple[tuple[int, int], ...]
    total: int | None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return str(body)[:300]


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise ApiError(response.status_code, _message(response))
    return response


def parse_ranges(value: str) -> tuple[tuple[int, int], ...]:
    """``0-1023,4096-8191`` (END inclusive) as ``((0, 1024), (4096, 8192))``."""
    ranges = []
    for item in value.split(","):
        start, sep, end = item.strip().partition("-")
        if sep and start.isdigit() and end.isdigit():
            ranges.append((int(start), int(end) + 1))
    return tuple(ranges)


class ImageAPI:
    """One Image API server at ``url`` (its root, with or without ``/v2``)."""

    def __init__(self, url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, connections: int = 4,
                 verify: Any = True) -> None:
        base = url.rstrip("/").removesuffix("/v2")
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Auth-Token"] = token
        self.url = base
        self.client = httpx.AsyncClient(
            base_url=base, headers=all_headers, timeout=TIMEOUT, verify=verify,
            limits=httpx.Limits(max_connections=connections + 2,
                                max_keepalive_connections=connections + 2),
        )
        self.extensions: bool | None = None  # None: not asked yet

    async def aclose(self) -> None:
        await self.client.aclose()

    async def discover(self) -> bool:
        """Does the server offer streamd's transfer extensions? (Asked once.)"""
        if self.extensions is None:
            try:
                r = await self.client.get("/v2/info/streamd")
                self.extensions = r.status_code == 200 and {"parallel_stage", "extents"} <= set(
                    r.json().get("extensions", {}))
            except (ValueError, AttributeError):
                self.extensions = False
        return self.extensions

    # -- metadata --------------------------------------------------------------------------

    async def image(self, image_id: str) -> dict[str, Any]:
        return _check(await self.client.get(f"/v2/images/{image_id}")).json()

    async def image_or_none(self, image_id: str) -> dict[str, Any] | None:
        r = await self.client.get(f"/v2/images/{image_id}")
        return None if r.status_code == 404 else _check(r).json()

    async def images(self) -> AsyncIterator[dict[str, Any]]:
        """Every image the caller sees, page by page."""
        path: str | None = "/v2/images?limit=100"
        while path:
            body = _check(await self.client.get(path)).json()
            for image in body["images"]:
                yield image
            path = body.get("next")

    async def create(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return _check(await self.client.post("/v2/images", json=dict(fields))).json()

    async def add_tags(self, image_id: str, tags: Iterable[str]) -> None:
        for tag in tags:
            _check(await self.client.put(f"/v2/images/{image_id}/tags/{tag}"))

    async def delete(self, image_id: str) -> None:
        _check(await self.client.delete(f"/v2/images/{image_id}"))

    # -- data ------------------------------------------------------------------------------

    async def extents(self, image_id: str) -> Extents:
        """The image's data and zero runs, whether the zeros are known, its xxh3."""
        body = _check(await self.client.get(f"/v2/images/{image_id}/extents")).json()
        xxh3 = body.get("xxh3")
        return Extents([Extent(e["start"], e["length"], bool(e["zero"]))
                        for e in body["extents"]], bool(body["zero_runs_known"]),
                       xxh3 if isinstance(xxh3, str) and xxh3 else None)

    def read(self, image_id: str, start: int | None = None, end: int | None = None
             ) -> Any:
        """A streamed GET of the image data (``async with``), bytes ``[start, end)``."""
        headers = {} if start is None else {"Range": f"bytes={start}-{(end or 0) - 1}"}
        return self.client.stream("GET", f"/v2/images/{image_id}/file", headers=headers,
                                  timeout=httpx.Timeout(None, connect=10.0, read=120.0))

    async def put_file(self, image_id: str, chunks: AsyncIterator[bytes], size: int) -> None:
        """``PUT …/file``: the plain Image API upload, one stream."""
        _check(await self.client.put(
            f"/v2/images/{image_id}/file", content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=httpx.Timeout(None, connect=10.0, read=600.0)))

    async def staged(self, image_id: str) -> Staged:
        r = _check(await self.client.head(f"/v2/images/{image_id}/stage"))
        total = r.headers.get("upload-length")
        return Staged(parse_ranges(r.headers.get("upload-ranges", "")),
                      int(total) if total else None)

    async def put_part(self, image_id: str, start: int, data: bytes | None, length: int,
                       total: int) -> Staged:
        """One part of a parallel stage: ``data``, or ``length`` zeros when it is None."""
        headers = {"Content-Range": f"bytes {start}-{start + length - 1}/{total}",
                   "Upload-Part": "zero" if data is None else "data",
                   "Content-Type": "application/octet-stream"}
        r = _check(await self.client.put(f"/v2/images/{image_id}/stage",
                                         content=data or b"", headers=headers))
        return Staged(parse_ranges(r.headers.get("upload-ranges", "")), total)

    async def import_staged(self, image_id: str) -> None:
        _check(await self.client.post(f"/v2/images/{image_id}/import",
                                      json={"method": {"name": "glance-direct"}}))

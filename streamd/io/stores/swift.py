"""The Swift store: OpenStack Object Storage (API v1), spoken over plain HTTP.

One object per image in ``container``. An image larger than ``segment_size`` becomes a static
large object: its segments go to ``<container>_segments`` under ``<key>/<write id>/``, and a
manifest published last makes the object appear whole; a write that fails or is cancelled
deletes the segments it wrote, so nothing half-done is left. A write killed with its process
cannot: ``discard_unfinished`` finds its segments (those under ``<key>/`` that no manifest
names) for whoever repairs the upload. When the size is known in
advance (the pipeline passes ``size``), every PUT carries its ``Content-Length``; when it is
not (a chunked upload), each segment is sent chunked, as Glance's swift driver does, and an
image of unknown size is always a static large object (one segment for a small one).

Plain HTTP, not python-swiftclient, measured (256 MiB objects against the tests' Swift,
client CPU-s per GiB, two runs; ``/tmp``-style script in the session note): swiftclient PUT
0.14-0.18, GET 0.31-0.40; httpx in the event loop PUT 0.73-0.78, GET 1.1-1.5. So:
- writes (PUTs of segments and manifests) and control requests use httpx in the event
  loop: a cancelled transfer closes its connection at once, and the extra ~0.6 CPU-s/GiB
  is small beside the upload's hashing (~3.5); swiftclient would need a worker thread per
  PUT that a cancellation cannot interrupt, fed chunk by chunk from the event loop;
- bulk reads go through ``bulk_get``: ``http.client`` ``readinto`` the transfer's buffer in
  worker threads, 0.68-0.76 CPU-s/GiB, near swiftclient's; the bench's Swift download
  (``python -m bench --swift-only``) was CPU-bound on this 2-core machine with httpx.

Authentication: tempauth/swauth v1 (``auth_url`` ending in ``/auth/v1.0``) or Keystone v3
(``auth_version = 3``: password of a user scoped to a project), or a fixed
``storage_url`` + ``token``. A 401 re-authenticates once; a second 401 is a StoreError that
names the store and says its credentials were refused.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import trio

from streamd.io.errors import ObjectNotFound, StoreError, StoreFull
from streamd.io.stores.base import (
    Locations,
    StoreCapabilities,
    StoredObject,
    check_key,
    check_range,
)
from streamd.io.stores.bulk_get import BulkResponse, open_get
from streamd.io.stores.chunks import ChunkCursor
from streamd.units import MiB

log = logging.getLogger(__name__)

SEGMENT_SIZE = 200 * MiB  # Glance's large_object_chunk_size: few segments, small manifests
MAX_SEGMENTS = 1000  # Swift's default max_manifest_segments
CLEANUP_TIMEOUT = 30.0  # seconds a failed write may spend deleting the segments it wrote
TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=60.0)


@dataclass(frozen=True)
class SwiftCredentials:
    """How to get a token: v1 (``user``/``key``), Keystone v3, or a fixed token."""

    auth_url: str | None = None
    user: str | None = None
    key: str | None = None
    auth_version: int = 1
    project: str | None = None
    user_domain: str = "Default"
    project_domain: str = "Default"
    region: str | None = None
    storage_url: str | None = None  # with ``token``: no authentication call at all
    token: str | None = None


@dataclass(frozen=True)
class Part:
    """What a read GETs: an object, or one segment of a large object (``etag``: the
    manifest's, checked against the segment's)."""

    path: str
    size: int
    etag: str | None


class SwiftStore:
    """Image data as Swift objects; location ``swift://<store>/<container>/<key>``."""

    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=False, max_readers=None, max_writers=None,
        sweeps=True,
    )

    def __init__(
        self,
        name: str,
        credentials: SwiftCredentials,
        *,
        container: str = "streamd",
        segment_size: int = SEGMENT_SIZE,
        create_container: bool = True,
        client: httpx.AsyncClient | None = None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if segment_size < 1:
            raise ValueError("segment_size must be positive")
        self.name = name
        self.container = container
        self.segments = f"{container}_segments"
        self.segment_size = segment_size
        self._creds = credentials
        self._create_container = create_container
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self._storage_url = credentials.storage_url
        self._token = credentials.token
        self._auth_lock = trio.Lock()
        self._containers_ready = False
        self._limiter = limiter  # worker threads of bulk reads (None: trio's default)
        self._locations = Locations("swift", name, container)
        self.bytes_fetched = 0  # body bytes received from Swift by reads

    def __repr__(self) -> str:
        return f"SwiftStore(name={self.name!r}, container={self.container!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the protocol ----------------------------------------------------------------------

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """Store ``chunks`` as one object; a large one as segments + a manifest (last)."""
        check_key(key)
        await self._ensure_containers()
        cursor = ChunkCursor(chunks)
        if size is not None and size <= self.segment_size:
            old = await self._segments_of(key)
            await self._put(self._object_path(self.container, key), cursor.take(size),
                            length=size)
            if not await cursor.at_end():
                await self._delete_quietly(self._object_path(self.container, key))
                raise StoreError(f"more data than the {size} bytes announced reached "
                                 f"store {self.name!r}")
            await self._delete_all(old)
            return StoredObject(self._locations.of(key), size)
        segment = self.segment_size
        if size is not None:
            segment = max(segment, math.ceil(size / MAX_SEGMENTS))
        if size is None and await cursor.at_end():  # empty, and said so only at the end
            old = await self._segments_of(key)
            await self._put(self._object_path(self.container, key), b"")
            await self._delete_all(old)
            return StoredObject(self._locations.of(key), 0)
        prefix = f"{key}/{secrets.token_hex(8)}/"
        written: list[tuple[str, int]] = []
        try:
            total = await self._put_segments(cursor, prefix, segment, size, written)
            old = await self._segments_of(key)
            manifest = [{"path": f"/{self.segments}/{name}", "size_bytes": n}
                        for name, n in written]
            await self._put(self._object_path(self.container, key) + "?multipart-manifest=put",
                            json.dumps(manifest).encode())
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                for name, _ in written:
                    await self._delete_quietly(self._object_path(self.segments, name))
            raise
        await self._delete_all(old)
        return StoredObject(self._locations.of(key), total)

    async def _put_segments(
        self, cursor: ChunkCursor, prefix: str, segment: int, size: int | None,
        written: list[tuple[str, int]],
    ) -> int:
        total = 0
        while True:
            if size is not None:
                length = min(segment, size - total)
                if length == 0:
                    break
            else:
                length = None
                if written and await cursor.at_end():
                    break
            if len(written) >= MAX_SEGMENTS:
                raise StoreError(f"image too large for store {self.name!r}: more than "
                                 f"{MAX_SEGMENTS} segments of {segment} bytes")
            name = f"{prefix}{len(written):08d}"
            counter = _Counter()
            await self._put(self._object_path(self.segments, name),
                            counter.count(cursor.take(segment)), length=length)
            if size is not None and counter.n != length:  # pragma: no cover - h11 refuses
                raise StoreError(f"segment of {counter.n} bytes, {length} expected")
            written.append((name, counter.n))
            total += counter.n
            if counter.n < segment and size is None:
                break
        if size is not None and not await cursor.at_end():
            raise StoreError(f"more data than the {size} bytes announced reached store "
                             f"{self.name!r}")
        return total

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield exactly the bytes asked for: one ranged GET of the object, or of each
        segment of a static large object that the range touches (``_parts``)."""
        path = self._object_path(self.container, self._locations.name(location))
        head = await self._request("HEAD", path)
        if head.status_code != 200:
            self._raise_for(head, "read")
        size = int(head.headers["content-length"])
        length = check_range(offset, length, size)
        if length == 0:
            return
        parts = None
        if head.headers.get("x-static-large-object", "").lower() == "true":
            parts = await self._parts(path, size)
        if parts is None:
            parts = [Part(path, size, None)]
        start = 0
        for part in parts:
            end = start + part.size
            if end > offset and start < offset + length:
                first = max(offset, start) - start
                last = min(offset + length, end) - start
                async for data in self._read_part(part, first, last - first):
                    yield data
            start = end

    async def _parts(self, path: str, size: int) -> list[Part] | None:
        """The segments of the large object at ``path``, to be read straight, or None (read
        it through its manifest) when the manifest is not a plain list of whole segments
        that add up to ``size``.

        Swift's SLO middleware streams every segment through the proxy a second time
        (a subrequest per segment): measured on the bench's Swift, a 256 MiB two-segment
        object costs its proxy 3.1-4.1 CPU-s/GiB through the manifest and 1.0-1.5 read as
        plain objects. The manifest's etags are checked against each segment's, as the
        middleware does."""
        response = await self._request("GET", path + "?multipart-manifest=get")
        if response.status_code != 200:
            return None
        try:
            listing = response.json()
            parts = [Part("/" + quote(s["name"].lstrip("/")), int(s["bytes"]), s.get("hash"))
                     for s in listing if "range" not in s and not s.get("sub_slo")]
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if len(parts) != len(listing) or sum(p.size for p in parts) != size:
            return None
        return parts

    async def _read_part(self, part: Part, offset: int, length: int
                         ) -> AsyncIterator[bytes]:
        """``[offset, offset + length)`` of one object, with one ranged GET."""
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        response = await self._bulk_get(part.path, headers)
        try:
            if response.status not in (200, 206):
                raise self._error_for(response.status, await response.read_all(), "read")
            if response.status == 200 and (offset or length != part.size):
                raise StoreError(f"store {self.name!r} ignored a byte range")
            if part.etag and response.headers.get("etag", "").strip('"') != part.etag:
                raise StoreError(f"store {self.name!r}: segment {part.path} is not the one "
                                 "its large object's manifest names (etag differs)")
            got = 0
            try:
                async for data in response.chunks(length):
                    got += len(data)
                    self.bytes_fetched += len(data)
                    yield data
            except OSError as exc:
                raise StoreError(f"store {self.name!r} broke off a read: {exc}") from exc
            if got != length:
                raise StoreError(f"store {self.name!r} sent {got} of {length} bytes")
        finally:
            await response.aclose()

    async def _bulk_get(self, path: str, headers: dict[str, str]) -> BulkResponse:
        """A GET whose body is read in worker threads (``bulk_get``); re-authenticated once
        on 401."""
        for attempt in (1, 2):
            await self._auth(renew=attempt == 2)
            try:
                response = await open_get(self._url(path),
                                          {**headers, **self._auth_headers()},
                                          limiter=self._limiter)
            except OSError as exc:
                raise StoreError(f"store {self.name!r} is unreachable: {exc}") from exc
            if response.status != 401 or attempt == 2:
                return response
            await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    async def delete(self, location: str) -> None:
        """Delete the object and, for a large one, its segments; a missing one is fine."""
        try:
            key = self._locations.name(location)
        except ObjectNotFound:
            return
        path = self._object_path(self.container, key)
        head = await self._request("HEAD", path)
        if head.status_code == 404:
            return
        if head.status_code not in (200, 204):
            self._raise_for(head, "delete")
        if head.headers.get("x-static-large-object", "").lower() == "true":
            # the manifest and its segments in one call (Swift's bulk delete of the SLO)
            response = await self._request("DELETE", path + "?multipart-manifest=delete",
                                           {"Accept": "application/json"})
            if response.status_code == 200:
                answer = response.json()
                if answer.get("Errors") or not answer.get("Response Status", "").startswith(
                        ("200", "204")):
                    raise StoreError(f"store {self.name!r} failed to delete a large object: "
                                     f"{answer.get('Response Status')} {answer.get('Errors')}")
                return
        else:
            response = await self._request("DELETE", path)
        if response.status_code not in (200, 204, 404):
            self._raise_for(response, "delete")

    async def stat(self, location: str) -> int:
        name = self._locations.name(location)
        return await self._head_size(self._object_path(self.container, name))

    async def discard_unfinished(self, key: str) -> int:
        """Delete the segments under ``<key>/`` that the object at ``key`` is not made of:
        those of large-object writes killed before their manifest was published (a small
        object is one PUT, which Swift drops whole if it is cut off). Only while no write
        under ``key`` runs: its segments are not in a manifest yet either."""
        check_key(key)
        keep = set(await self._segments_of(key))  # "/<segments>/<name>", as manifests say
        removed = 0
        for name in await self._names_under(self.segments, f"{key}/"):
            if f"/{self.segments}/{name}" not in keep:
                await self._delete_quietly(self._object_path(self.segments, name))
                removed += 1
        return removed

    async def _names_under(self, container: str, prefix: str) -> list[str]:
        """The names of ``container``'s objects that start with ``prefix``, every page."""
        names: list[str] = []
        marker = ""
        while True:
            response = await self._request(
                "GET", f"/{quote(container)}?format=json&prefix={quote(prefix)}"
                       f"&marker={quote(marker)}")
            if response.status_code == 404:
                return names
            if response.status_code != 200:
                self._raise_for(response, "list")
            page = [o["name"] for o in response.json()]
            if not page:
                return names
            names += page
            marker = page[-1]

    # -- upkeep for tests and operators ----------------------------------------------------

    async def list_names(self) -> list[str]:
        """Every object in the container and the segment container (segments as paths)."""
        names: list[str] = []
        for container in (self.container, self.segments):
            response = await self._request("GET", f"/{quote(container)}?format=json")
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                self._raise_for(response, "list")
            prefix = "" if container == self.container else f"{self.segments}/"
            names += [prefix + o["name"] for o in response.json()]
        return names

    # -- HTTP ------------------------------------------------------------------------------

    @staticmethod
    def _object_path(container: str, name: str) -> str:
        return f"/{quote(container)}/{quote(name)}"

    async def _ensure_containers(self) -> None:
        if self._containers_ready or not self._create_container:
            return
        for container in (self.container, self.segments):
            response = await self._request("PUT", f"/{quote(container)}")
            if response.status_code not in (201, 202, 204):
                self._raise_for(response, "create container")
        self._containers_ready = True

    async def _delete_all(self, segment_paths: list[str]) -> None:
        """Delete the segments of an object that a write has just replaced."""
        for path in segment_paths:
            await self._delete_quietly(quote(path))

    async def _delete_quietly(self, path: str) -> None:
        """Best effort: a failed clean-up is logged, not raised over the real error."""
        try:
            response = await self._request("DELETE", path)
        except StoreError as exc:
            log.warning("store %s: could not delete %s: %s", self.name, path, exc)
            return
        if response.status_code not in (200, 204, 404):
            log.warning("store %s: could not delete %s: %s", self.name, path,
                        response.status_code)

    async def _head_size(self, path: str) -> int:
        response = await self._request("HEAD", path)
        if response.status_code != 200:
            self._raise_for(response, "stat")
        return int(response.headers["content-length"])

    async def _segments_of(self, key: str) -> list[str]:
        """The segment paths of the current object at ``key`` if it is a large object."""
        path = self._object_path(self.container, key)
        response = await self._request("GET", path + "?multipart-manifest=get")
        if response.status_code != 200:
            return []
        if response.headers.get("x-static-large-object", "").lower() != "true":
            return []
        return [s["name"] for s in response.json()]

    async def _put(self, path: str, body: AsyncIterator[memoryview] | bytes,
                   *, length: int | None = None) -> None:
        headers = {}
        if isinstance(body, bytes):
            length = len(body)
        if length is not None:
            headers["Content-Length"] = str(length)
        if isinstance(body, bytes):
            response = await self._request("PUT", path, headers, content=body)
        else:
            # a streamed body cannot be sent twice: authenticate first, no retry on 401
            await self._auth()
            try:
                response = await self._client.request(
                    "PUT", self._url(path), headers={**headers, **self._auth_headers()},
                    content=body)
            except httpx.TransportError as exc:
                raise StoreError(f"store {self.name!r} failed during a write: {exc}") from exc
        if response.status_code not in (201, 202):
            self._raise_for(response, "write")

    async def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None,
        *, content: bytes | None = None,
    ) -> httpx.Response:
        for attempt in (1, 2):
            await self._auth(renew=attempt == 2)
            try:
                response = await self._client.request(
                    method, self._url(path), headers={**(headers or {}), **self._auth_headers()},
                    content=content)
            except httpx.TransportError as exc:
                raise StoreError(f"store {self.name!r} is unreachable: {exc}") from exc
            if response.status_code != 401:
                return response
        return response

    def _url(self, path: str) -> str:
        assert self._storage_url is not None
        return self._storage_url.rstrip("/") + path

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self._token or ""}

    async def _auth(self, *, renew: bool = False) -> None:
        async with self._auth_lock:
            if self._token and self._storage_url and not renew:
                return
            creds = self._creds
            if creds.auth_url is None:
                if renew:
                    raise StoreError(f"store {self.name!r} refused its configured token; "
                                     "check the store's credentials")
                return
            try:
                if creds.auth_version == 3:
                    self._storage_url, self._token = await self._keystone_v3()
                else:
                    self._storage_url, self._token = await self._tempauth()
            except httpx.TransportError as exc:
                raise StoreError(f"store {self.name!r}: its auth service is unreachable: "
                                 f"{exc}") from exc

    async def _tempauth(self) -> tuple[str, str]:
        creds = self._creds
        assert creds.auth_url is not None
        response = await self._client.get(
            creds.auth_url, headers={"X-Auth-User": creds.user or "",
                                     "X-Auth-Key": creds.key or ""})
        if response.status_code in (401, 403):
            raise StoreError(f"store {self.name!r}: its credentials were refused by "
                             f"{creds.auth_url} ({response.status_code}); check user and key")
        if response.status_code >= 300:
            raise StoreError(f"store {self.name!r}: authentication failed "
                             f"({response.status_code})")
        return (creds.storage_url or response.headers["x-storage-url"],
                response.headers["x-auth-token"])

    async def _keystone_v3(self) -> tuple[str, str]:
        creds = self._creds
        assert creds.auth_url is not None
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": creds.user, "password": creds.key,
                "domain": {"name": creds.user_domain}}}},
            "scope": {"project": {"name": creds.project,
                                  "domain": {"name": creds.project_domain}}},
        }}
        response = await self._client.post(creds.auth_url.rstrip("/") + "/auth/tokens",
                                           json=body)
        if response.status_code in (401, 403):
            raise StoreError(f"store {self.name!r}: Keystone refused its credentials "
                             f"({response.status_code}); check user, password and project")
        if response.status_code >= 300:
            raise StoreError(f"store {self.name!r}: Keystone answered {response.status_code}")
        token = response.headers["x-subject-token"]
        if creds.storage_url:
            return creds.storage_url, token
        for service in response.json()["token"].get("catalog", []):
            if service.get("type") != "object-store":
                continue
            for endpoint in service.get("endpoints", []):
                if endpoint.get("interface") == "public" and (
                        creds.region is None or endpoint.get("region") == creds.region):
                    return endpoint["url"], token
        raise StoreError(f"store {self.name!r}: no object-store endpoint in Keystone's "
                         "catalog; set storage_url")

    def _raise_for(self, response: httpx.Response, action: str) -> None:
        raise self._error_for(response.status_code, b"", action, response.reason_phrase)

    def _error_for(self, status: int, body: bytes, action: str, reason: str = ""
                   ) -> StoreError | ObjectNotFound:
        """The error for an answer of ``status`` to ``action`` (returned, not raised)."""
        if status == 404:
            return ObjectNotFound(f"no such image data in store {self.name!r}")
        if status == 507:
            return StoreFull(f"store {self.name!r} is out of space")
        if status == 401:
            return StoreError(f"store {self.name!r} refused its credentials ({action}); "
                              "check the store's settings")
        return StoreError(f"store {self.name!r} failed to {action}: {status} {reason}".rstrip())


class _Counter:
    """Counts the bytes an iterator passes on."""

    def __init__(self) -> None:
        self.n = 0

    async def count(self, chunks: AsyncIterator[memoryview]) -> AsyncIterator[memoryview]:
        async for chunk in chunks:
            self.n += len(chunk)
            yield chunk

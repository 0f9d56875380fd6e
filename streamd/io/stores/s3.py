"""The S3 store: any S3-compatible service (AWS, Ceph RGW, MinIO, Swift's s3api), via boto3.

An image that fits in one part is one ``PutObject`` with its length. A larger one is a
multipart upload with parts of ``part_size`` and at most ``parts_in_flight`` of them in
memory or on the wire at once, so an upload holds ``part_size × parts_in_flight`` bytes
whatever the image size (Glance's S3 driver buffers a whole image of unknown size). The
object appears when ``CompleteMultipartUpload`` succeeds; a write that fails or is
cancelled aborts its multipart upload; ``discard_unfinished`` aborts those of one key, for
the repair of an upload that a killed node left (``streamd.service.repair``, at start-up
and periodically, once that upload's lease has run out).

boto3 blocks, so every call runs in a worker thread under the store's limiter; a cancelled
transfer waits for the call in flight (one part or one read at most) and then cleans up.
Reads are ranged ``GetObject`` calls streamed ``read_chunk`` bytes at a time.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from streamd.io.errors import ObjectNotFound, StoreError, StoreFull
from streamd.io.stores.base import (
    Locations,
    StoreCapabilities,
    StoredObject,
    check_key,
    check_range,
)
from streamd.io.stores.chunks import ChunkCursor
from streamd.units import KiB, MiB

log = logging.getLogger(__name__)

PART_SIZE = 8 * MiB  # S3's minimum is 5 MiB; 8 keeps 10,000 parts above 78 GiB
PARTS_IN_FLIGHT = 2  # one filling from the client while one goes to the store
READ_CHUNK = 512 * KiB  # bytes per read of a GetObject body (one thread hop each)
MAX_PARTS = 10_000  # S3's limit
CLEANUP_TIMEOUT = 30.0  # seconds a failed write may spend aborting its upload

_T = TypeVar("_T")


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom: an endpoint (None: AWS), a bucket, keys, region, addressing."""

    bucket: str
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    addressing_style: str = "path"  # "path" or "virtual"
    prefix: str = ""  # prepended to every object key
    create_bucket: bool = True
    verify_tls: bool = True


class S3Store:
    """Image data as S3 objects; location ``s3://<store>/<bucket>/<object key>``."""

    capabilities = StoreCapabilities(
        ranged_reads=True, sparse_writes=False, max_readers=None, max_writers=None,
        sweeps=True,
    )

    def __init__(
        self,
        name: str,
        settings: S3Settings,
        *,
        part_size: int = PART_SIZE,
        parts_in_flight: int = PARTS_IN_FLIGHT,
        read_chunk: int = READ_CHUNK,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("part_size must be at least 5 MiB (S3's smallest part)")
        if parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        self.name = name
        self.bucket = settings.bucket
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self._settings = settings
        self._read_chunk = read_chunk
        self._limiter = limiter or trio.CapacityLimiter(8)
        self._client = _make_client(settings, max_pool=max(10, parts_in_flight * 4))
        self._bucket_ready = False
        self._locations = Locations("s3", name, settings.bucket)
        self.bytes_fetched = 0  # body bytes received from the service by reads

    def __repr__(self) -> str:
        return f"S3Store(name={self.name!r}, bucket={self.bucket!r})"

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        await trio.to_thread.run_sync(self._client.close)

    # -- the protocol ----------------------------------------------------------------------

    async def write(
        self, chunks: AsyncIterable[memoryview], *, key: str, size: int | None = None
    ) -> StoredObject:
        """One PutObject for a small image, else a bounded multipart upload."""
        check_key(key)
        object_key = self._settings.prefix + key
        await self._ensure_bucket()
        cursor = ChunkCursor(chunks)
        part_size = self.part_size
        if size is not None:
            part_size = max(part_size, -(-size // MAX_PARTS))
        # an image announced smaller than a part needs no more than its own size
        first = bytearray(part_size if size is None else min(part_size, size))
        n = await cursor.readinto(memoryview(first))
        if len(first) < part_size and not await cursor.at_end():
            raise StoreError(f"more data than the {size} bytes announced reached store "
                             f"{self.name!r}")
        if n < part_size or await cursor.at_end():
            body = _ViewReader(memoryview(first)[:n])
            await self._call("write", lambda: self._client.put_object(
                Bucket=self.bucket, Key=object_key, Body=body, ContentLength=n))
            return StoredObject(self._locations.of(object_key), n)
        return await self._multipart(cursor, object_key, key, first, part_size)

    async def _multipart(
        self, cursor: ChunkCursor, object_key: str, key: str, first: bytearray, part_size: int
    ) -> StoredObject:
        created = await self._call("write", lambda: self._client.create_multipart_upload(
            Bucket=self.bucket, Key=object_key))
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}
        total = 0
        try:
            free_send, free_recv = trio.open_memory_channel[bytearray](self.parts_in_flight)
            for _ in range(self.parts_in_flight - 1):
                free_send.send_nowait(bytearray(part_size))
            try:
                async with trio.open_nursery() as nursery:
                    buf, n, number = first, len(first), 1
                    while n:
                        if number > MAX_PARTS:
                            raise StoreError(f"image too large for store {self.name!r}: "
                                             f"more than {MAX_PARTS} parts of {part_size} bytes")
                        nursery.start_soon(self._upload_part, object_key, upload_id, number,
                                           buf, n, etags, free_send)
                        total += n
                        number += 1
                        buf = await free_recv.receive()
                        n = await cursor.readinto(memoryview(buf))
            except BaseExceptionGroup as group:
                raise _the_error(group) from None
            parts = [{"PartNumber": k, "ETag": etags[k]} for k in sorted(etags)]
            await self._call("write", lambda: self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}))
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await self._abort(object_key, upload_id)
            raise
        return StoredObject(self._locations.of(object_key), total)

    async def _upload_part(
        self, object_key: str, upload_id: str, number: int, buf: bytearray, n: int,
        etags: dict[int, str], free: trio.MemorySendChannel[bytearray],
    ) -> None:
        body = _ViewReader(memoryview(buf)[:n])
        answer = await self._call("write", lambda: self._client.upload_part(
            Bucket=self.bucket, Key=object_key, UploadId=upload_id, PartNumber=number,
            Body=body, ContentLength=n))
        etags[number] = answer["ETag"]
        free.send_nowait(buf)

    async def _abort(self, object_key: str, upload_id: str) -> None:
        try:
            await self._call("abort", lambda: self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id))
        except (StoreError, ObjectNotFound) as exc:
            log.warning("store %s: could not abort multipart upload %s of %s: %s",
                        self.name, upload_id, object_key, exc)

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """One ranged GetObject, read ``read_chunk`` bytes per thread hop."""
        object_key = self._locations.name(location)
        size = await self._head(object_key)
        length = check_range(offset, length, size)
        if length == 0:
            return
        answer = await self._call("read", lambda: self._client.get_object(
            Bucket=self.bucket, Key=object_key,
            Range=f"bytes={offset}-{offset + length - 1}"))
        body = answer["Body"]
        try:
            remaining = length
            while remaining:
                want = min(self._read_chunk, remaining)
                data = await self._call("read", body.read, want)
                if not data:
                    raise StoreError(f"store {self.name!r} sent {length - remaining} of "
                                     f"{length} bytes")
                remaining -= len(data)
                self.bytes_fetched += len(data)
                yield data
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(body.close)

    async def delete(self, location: str) -> None:
        try:
            object_key = self._locations.name(location)
        except ObjectNotFound:
            return
        try:
            await self._call("delete", lambda: self._client.delete_object(
                Bucket=self.bucket, Key=object_key))
        except ObjectNotFound:
            pass

    async def stat(self, location: str) -> int:
        return await self._head(self._locations.name(location))

    # -- upkeep ----------------------------------------------------------------------------

    async def discard_unfinished(self, key: str) -> int:
        """Abort the multipart uploads of ``key`` that writes killed with their process left
        (a single PutObject cut off leaves nothing). Only while no write under ``key`` runs:
        its upload looks just the same."""
        check_key(key)
        object_key = self._settings.prefix + key
        answer = await self._call("list", lambda: self._client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=object_key))
        aborted = 0
        for upload in answer.get("Uploads", []):
            if upload["Key"] == object_key:
                await self._abort(object_key, upload["UploadId"])
                aborted += 1
        return aborted

    async def list_names(self) -> list[str]:
        """Every object and unfinished multipart upload under the prefix (for tests)."""
        prefix = self._settings.prefix
        try:
            objects = await self._call("list", lambda: self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix))
            uploads = await self._call("list", lambda: self._client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=prefix))
        except ObjectNotFound:  # no bucket yet
            return []
        names = [o["Key"] for o in objects.get("Contents", [])]
        names += [f"{u['Key']} (multipart upload)" for u in uploads.get("Uploads", [])]
        return names

    # -- boto3 -----------------------------------------------------------------------------

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._settings.create_bucket:
            return
        try:
            await self._call("check bucket", lambda: self._client.head_bucket(
                Bucket=self.bucket))
        except ObjectNotFound:
            await self._call("create bucket", lambda: self._client.create_bucket(
                Bucket=self.bucket))
        self._bucket_ready = True

    async def _head(self, object_key: str) -> int:
        answer = await self._call("stat", lambda: self._client.head_object(
            Bucket=self.bucket, Key=object_key))
        return int(answer["ContentLength"])

    async def _call(self, action: str, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except Exception as exc:
            raise self._failure(exc, action) from exc

    def _failure(self, exc: Exception, action: str) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "NoSuchBucket", "NoSuchUpload", "404") or status == 404:
                return ObjectNotFound(f"no such image data in store {self.name!r}")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                        "InvalidToken", "ExpiredToken") or status in (401, 403):
                why = code or status
                return StoreError(f"store {self.name!r} refused its credentials ({why}) "
                                  f"during {action}; check the store's keys")
            if code in ("EntityTooLarge",) or status == 507:
                return StoreFull(f"store {self.name!r} has no room for the image ({code})")
            return StoreError(f"store {self.name!r} failed to {action}: {code or status}")
        if isinstance(exc, BotoCoreError | OSError):
            return StoreError(f"store {self.name!r} is unreachable during {action}: {exc}")
        return exc


def _the_error(group: BaseExceptionGroup) -> BaseException:
    """The one error a failed multipart upload raises: the first that is not a
    cancellation (the parts still in flight are cancelled because of it)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return group


class _ViewReader(io.RawIOBase):
    """A seekable file over a view of a part buffer: botocore takes no ``memoryview``, and
    ``bytes(view)`` would copy every part once more."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), len(self._view) - self._pos)
        buf[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return len(self._view)


def _make_client(settings: S3Settings, *, max_pool: int) -> Any:
    """A boto3 S3 client for any S3 server: checksums only when required, given addressing."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.region,
        s3={"addressing_style": settings.addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=max_pool,
        connect_timeout=10,
        read_timeout=120,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.endpoint_url, aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key, config=config,
        verify=settings.verify_tls)

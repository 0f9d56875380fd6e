"""Image locations: an image whose data is a URL on a web server, read through an HTTP store.

Glance's location API, on streamd's copies of image data (``ImageRecord.locations``: one
``StoredCopy`` per store). A location is an ``http(s)://`` URL; it is recorded as a copy in
an ``http`` store (``[stores.<id>] type = "http"``), which reads it with ranged GETs, so
downloads, ranges included, go through it like any other store.

- ``POST /v2/images/{id}/locations`` (Image API 2.17) gives a ``queued`` image its data:
  ``{"url": …, "validation_data": {"os_hash_algo": …, "os_hash_value": …}}``. 202, as
  Glance. The URL passes the HTTP store's filters (web-download's), its size is asked
  (``stat``: HEAD), and the size counts against ``image_size_cap`` and the owner's quota.
  Without ``validation_data`` the image is ``active`` before the answer, with that size and
  ``os_hash_algo``, and a job (a ``location_import`` task) reads the URL once and records
  ``checksum`` and ``os_hash_value`` (Glance 33's ``do_secure_hash``). With it the image
  is ``importing`` while a job reads the URL once through the hashers (md5, the given
  algorithm, xxh3; memory two chunks whatever the size), then ``active`` with those
  digests, or ``queued`` again, with no location, when the hash differs; the job's
  ``location_import`` task tells which.
- ``GET /v2/images/{id}/locations``: the copies as ``{"url", "metadata": {"store"}}``, for
  admins and the ``service`` role (Glance's ``fetch_image_location``).
- The PATCH ops ``add /locations/-``, ``replace /locations``, ``remove /locations/<n>``
  (glanceclient's ``add_location``, ``update_location``, ``delete_locations``), only with
  ``show_multiple_locations`` (403 otherwise, as Glance), which also shows the owner (and
  admins) an image's ``locations``. Unlike Glance, an add with ``validation_data`` is
  verified against the data (the same job), and an add to an image that has data must
  answer with its recorded size.

A location that answers with another size or hash than the image records is refused. The
registry keeps one copy per store, so an image has at most one location per http store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from streamd import policy
from streamd.context import RequestContext
from streamd.errors import BadRequest, Conflict, Forbidden, NotFound, StreamdError, TooLarge
from streamd.io import ObjectNotFound, SizeCapExceeded, Store, StoreError, UploadResult
from streamd.io.stores.chunks import ChunkCursor
from streamd.io.stores.discard import DiscardStore
from streamd.io.url_filter import UriRefused
from streamd.registry import ImageRecord, StoredCopy
from streamd.registry.tasks import UNFINISHED, TaskRecord
from streamd.request_ids import current_request_id
from streamd.service import disk_formats, images, quotas
from streamd.service.access import visible_image
from streamd.service.image_patch import PATCH_V21, PatchOp, parse_patch
from streamd.service.imports import TASK_TIME_TO_LIVE
from streamd.service.runtime import Runtime
from streamd.service.stored_data import registry_values
from streamd.service.transfers import REQUIRED_FORMATS

log = logging.getLogger(__name__)

TASK_TYPE = "location_import"  # Glance's task type for POST …/locations
HTTP_SCHEMES = ("http", "https")
POST_ALGOS = ("sha1", "sha256", "sha512", "md5")  # Glance's add_location schema enum
MAX_URL = 2048  # characters: the registry's location column
SERVICE_ROLE = "service"  # Glance's service_api rule: role:service or role:admin
_HEX = frozenset(string.hexdigits)
_DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48,
                 "sha512": 64}


@dataclass(frozen=True)
class Validation:
    """What a client says the data at a location hashes to (lowercase hex)."""

    os_hash_algo: str
    os_hash_value: str
    checksum: str | None = None  # md5; only the PATCH form carries it


@dataclass(frozen=True)
class Target:
    """A checked location: ``url`` holds ``size`` bytes, recorded in http store ``store``."""

    store: str
    url: str
    size: int
    validation: Validation | None = None



# -- views -------------------------------------------------------------------------------------


def locations_view(image: ImageRecord) -> list[dict[str, Any]]:
    """The copies as Glance lists locations: ``url`` and the ``store`` in ``metadata``."""
    return [{"url": c.location, "metadata": {"store": c.store}} for c in image.locations]


def shown_locations(rt: Runtime, ctx: RequestContext, image: ImageRecord
                    ) -> list[dict[str, Any]] | None:
    """The image's ``locations`` field: None (absent) unless ``show_multiple_locations``;
    then the copies for its owner and admins (``get_image_location``), ``[]`` for others."""
    if not rt.settings.show_multiple_locations:
        return None
    return locations_view(image) if policy.can_modify(ctx, image) else []


async def list_locations(rt: Runtime, ctx: RequestContext, image_id: str
                         ) -> list[dict[str, Any]]:
    """``GET /v2/images/{id}/locations``: admins and the service role only, as Glance."""
    image = await visible_image(rt, ctx, image_id)
    if not (ctx.is_admin or SERVICE_ROLE in ctx.roles):
        raise Forbidden("You are not authorized to complete fetch_image_location action.")
    return locations_view(image)


# -- POST /v2/images/{id}/locations ------------------------------------------------------------


async def add_location(rt: Runtime, ctx: RequestContext, image_id: str, body: Any
                       ) -> TaskRecord | None:
    """Give queued image ``image_id`` the data at a URL (see the module docstring).

    Returns the verification job's task, or None when the image is already active (no
    ``validation_data``). Every check that needs no data happens first: 400 (body, URL
    filters, no data at the URL, missing formats), 403, 404, 409 (not queued), 413.
    """
    url, validation = _parse_add_body(body)
    image = await visible_image(rt, ctx, image_id)
    if image.status != "queued":
        raise Conflict(f"It's not allowed to add locations if image status is {image.status}.")
    if not (policy.can_modify(ctx, image) or SERVICE_ROLE in ctx.roles):
        raise Forbidden("You are not authorized to complete add_image_location action.")
    if not rt.stores.ids_of_type("http") or _scheme(url) not in HTTP_SCHEMES:
        raise Forbidden("http store must be enabled to use location API by normal user.")
    _ensure_formats(image)
    target = await check_target(rt, image, url, validation)
    if validation is None:
        record = await _activate(rt, image_id, target, os_hash_algo=rt.settings.os_hash_algo)
        log.info("LOCATION image=%s store=%s size=%d: active, hashing", image_id,
                 target.store, record.size)
        return await _start_hashing(rt, ctx, record, target)
    return await _start_verification(rt, ctx, image, target)


def _parse_add_body(body: Any) -> tuple[str, Validation | None]:
    """Glance's ``add_location`` schema: ``url`` (required) and ``validation_data``."""
    if not isinstance(body, Mapping):
        raise BadRequest('The body must be a JSON object, e.g. {"url": "https://…/image.raw", '
                         '"validation_data": {"os_hash_algo": "sha512", "os_hash_value": '
                         '"…"}}.')
    url = body.get("url")
    if "url" not in body:
        raise BadRequest("Provided object does not match schema 'location': 'url' is a "
                         "required property.")
    if not isinstance(url, str):
        raise BadRequest(f"Provided object does not match schema 'location': {url!r} is not "
                         "of type 'string'.")
    data = body.get("validation_data", {})
    if not isinstance(data, Mapping):
        raise BadRequest("validation_data must be an object with os_hash_algo and "
                         "os_hash_value.")
    unknown = sorted(set(data) - {"os_hash_algo", "os_hash_value"})
    if unknown:
        raise BadRequest(f"validation_data may not have {', '.join(unknown)}: it has "
                         "os_hash_algo and os_hash_value only.")
    if not data:
        return url, None
    for name, other in (("os_hash_algo", "os_hash_value"), ("os_hash_value", "os_hash_algo")):
        if name in data and other not in data:
            raise BadRequest(f"Provided object does not match schema 'location': '{other}' "
                             f"is a dependency of '{name}'.")
    algo, value = data["os_hash_algo"], data["os_hash_value"]
    if algo not in POST_ALGOS:
        raise BadRequest(f"Provided object does not match schema 'location': {algo!r} is not "
                         f"one of {list(POST_ALGOS)}.")
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest("os_hash_value must be a hexadecimal string of at most 128 "
                         "characters.")
    _check_digest("os_hash_value", value, algo, BadRequest)
    return url, Validation(algo, value.lower())


def _check_digest(name: str, value: str, algo: str, error: type[BadRequest | Conflict]
                  ) -> None:
    """Glance's checks of a client's digest: hexadecimal, and as long as ``algo``'s."""
    if not value or not set(value) <= _HEX or len(value) % 2:
        raise error(f"{name} ({value}) is not a valid hexadecimal value")
    want = _DIGEST_BYTES[algo]
    if len(value) // 2 != want:
        raise error(f"{name}: ({value}) is not the correct size for ({algo}) (should be "
                    f"({want}) bytes)")


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _ensure_formats(image: ImageRecord) -> None:
    missing = [name for name in REQUIRED_FORMATS if not getattr(image, name)]
    if missing:
        raise BadRequest(f"Propert{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)} "
                         "must be set prior to saving data.")


# -- checking a location -----------------------------------------------------------------------


async def check_target(
    rt: Runtime,
    image: ImageRecord,
    url: str,
    validation: Validation | None = None,
    *,
    store_id: str | None = None,
    copies: Sequence[StoredCopy] | None = None,
    size: int | None = None,
) -> Target:
    """Check ``url`` as a new location of ``image`` and ask its size; nothing is written.

    ``store_id`` names the http store (None: the first without a copy of the image among
    ``copies``, default the image's); ``size`` is the size the image records (default its
    own), which the URL must answer with. 400 when the URL is refused by the filters, holds
    nothing, or answers with another size; 409 when every http store has a copy; 413 past
    ``image_size_cap`` or the owner's quota; 503 when the web server fails (retry).
    """
    copies = image.locations if copies is None else copies
    size = image.size if size is None else size
    if len(url) > MAX_URL:
        raise BadRequest(f"Invalid location: a URL may be at most {MAX_URL} characters.")
    import httpx  # here, not at the top: a server that never calls out does not load it
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in HTTP_SCHEMES or not parsed.host:
        raise BadRequest("Invalid location: it must be an http:// or https:// URL with a "
                         "host, read through an http store.")
    if any(c.location == url for c in copies):
        raise BadRequest(f"The location {_shown(url)} already exists")
    store_id = _http_store(rt, image, store_id, copies)
    store = rt.stores.holding(store_id)
    answered = await _stat(store, url)
    if answered == 0:
        raise BadRequest(f"Invalid location: {_shown(url)} holds no data (0 bytes).")
    if size is not None and answered != size:
        raise BadRequest(f"Invalid location: {_shown(url)} holds {answered} bytes, and image "
                         f"{image.id} has {size}: a location must hold the image's data.")
    if size is None:
        await _ensure_fits(rt, image, answered)
    return Target(store_id, url, answered, validation)


def _http_store(rt: Runtime, image: ImageRecord, store_id: str | None,
                copies: Sequence[StoredCopy]) -> str:
    http = rt.stores.ids_of_type("http")
    if not http:
        raise BadRequest("Invalid location: this cloud has no http store to read URLs with.")
    if store_id is not None:
        if store_id not in http:
            raise BadRequest(f"Invalid location: store {store_id!r} is not an http store "
                             f"(the http stores are: {', '.join(http)}).")
        if any(c.store == store_id for c in copies):
            raise Conflict(f"Image {image.id} already has a location in store {store_id}; "
                           "streamd keeps one location per store.")
        return store_id
    for candidate in http:
        if not any(c.store == candidate for c in copies):
            return candidate
    raise Conflict(f"Image {image.id} already has a location in every http store "
                   f"({', '.join(http)}); streamd keeps one location per store.")


async def _stat(store: Store, url: str) -> int:
    """The size at ``url``: 400 when the filters refuse it (or a hop it redirects to: the
    store checks each before connecting) or nothing is there; 503 when the web server fails
    or cannot be reached (retry)."""
    try:
        return await store.stat(url)
    except ObjectNotFound as exc:
        raise BadRequest(f"Invalid location: {exc.message}") from None
    except StoreError as exc:
        if isinstance(exc.__cause__, UriRefused):  # Glance's words, which tempest looks for
            raise BadRequest(f"Invalid location: URI for add location does not pass "
                             f"filtering: {_shown(url)}: {exc.message}") from None
        raise


async def _ensure_fits(rt: Runtime, image: ImageRecord, size: int) -> None:
    cap = rt.settings.image_size_cap
    if size > cap:
        raise SizeCapExceeded(f"The image at this location is too large: {size} bytes, this "
                              f"cloud's limit (image_size_cap) is {cap} bytes.")
    left = await quotas.remaining_bytes(rt, image.owner)
    if left is not None and size > left:
        raise quotas.size_quota_exceeded(rt, image.owner, left, size)


def _shown(url: str) -> str:
    """``url`` for messages, logs and tasks: without credentials, nor a query (which may be
    a signature)."""
    import httpx  # here, not at the top: a server that never calls out does not load it
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "the URL"
    shown = str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
    return f"{shown}?…" if parsed.query else shown


# -- recording ---------------------------------------------------------------------------------


async def _activate(rt: Runtime, image_id: str, target: Target,
                    digests: UploadResult | None = None, *, expected: str = "queued",
                    os_hash_algo: str | None = None) -> ImageRecord:
    """``expected`` -> active with ``target`` as the image's one copy (and ``digests``, or
    the ``os_hash_algo`` its hash will be computed with)."""
    if digests is not None:  # the copy is the URL, whatever the hashing pass "stored"
        image = await rt.db(rt.registry.get, image_id)
        values = registry_values(target.store, target.url, target.size, digests,
                                 virtual_size=disk_formats.stored_virtual_size(
                                     rt.settings, image, digests.inspection))
    else:
        values = {"size": target.size, "location": target.url, "store": target.store,
                  "os_hash_algo": os_hash_algo}
    return await rt.db(rt.registry.transition, image_id, expected, "active", values)


async def _start_hashing(rt: Runtime, ctx: RequestContext, image: ImageRecord,
                         target: Target) -> TaskRecord:
    """Start the job that computes the digests of an active image's unverified location.

    As Glance 33 with ``do_secure_hash``: the image is ``active`` at once with
    ``os_hash_algo`` set, and a ``location_import`` task reads the URL once and records
    ``checksum`` and ``os_hash_value`` (a failure leaves the image active without them, as
    in Glance, the task saying why). Deleting the image stops the job."""
    async with rt.jobs.reserve(image.id, "location") as reservation:
        task_id = str(uuid.uuid4())
        task = await rt.db(
            rt.tasks.create, TASK_TYPE, owner=ctx.project_id, image_id=image.id,
            user_id=ctx.user_id, task_id=task_id, request_id=current_request_id(),
            input={"image_id": image.id, "loc_url": _shown(target.url),
                   "validation_data": {}})
        reservation.start(rt.nursery, lambda: _hash_active(rt, image.id, task_id, target))
    return task


async def _hash_active(rt: Runtime, image_id: str, task_id: str, target: Target) -> None:
    """The job of ``_start_hashing``. Never raises but for cancellation."""
    try:
        await rt.db(rt.tasks.change, task_id, ["pending"], "processing")
        image = await rt.db(rt.registry.get, image_id)
        algo = image.os_hash_algo or rt.settings.os_hash_algo
        digests = await _digest(rt, rt.stores.holding(target.store), target, image, algo,
                                inspect=False)
        await rt.db(rt.registry.update, image_id, {
            "checksum": digests.checksum, "os_hash_algo": digests.os_hash_algo,
            "os_hash_value": digests.os_hash_value, "xxh3": digests.xxh3},
            expected_status=["active", "deactivated"])
    except BaseException as exc:
        reason = exc.message if isinstance(exc, StreamdError) else (
            f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception)
            else "interrupted (the image was deleted, or the server stopped)")
        log.warning("LOCATION image=%s task=%s: hash not computed: %s", image_id, task_id,
                    reason)
        with trio.CancelScope(shield=True):
            await _close_task(rt, image_id, task_id, "failure", reason)
        if not isinstance(exc, Exception):
            raise
        return
    with trio.CancelScope(shield=True):
        await _close_task(rt, image_id, task_id, "success", "")
    log.info("LOCATION image=%s task=%s: hashed (%s)", image_id, task_id, algo)


async def _start_verification(rt: Runtime, ctx: RequestContext, image: ImageRecord,
                              target: Target) -> TaskRecord:
    """Claim the image and start the job that hashes ``target`` and records it.

    A queued image is ``importing`` meanwhile (one request wins that change); an active
    one stays as it is and gets the copy once the hash matches.
    """
    assert target.validation is not None
    queued = image.status == "queued"
    async with rt.jobs.reserve(image.id, "location") as reservation:
        task_id = str(uuid.uuid4())
        if queued:
            await rt.db(rt.registry.transition, image.id, "queued", "importing")
        try:
            task = await rt.db(
                rt.tasks.create, TASK_TYPE, owner=ctx.project_id, image_id=image.id,
                user_id=ctx.user_id, task_id=task_id, request_id=current_request_id(),
                input={"image_id": image.id, "loc_url": _shown(target.url),
                       "validation_data": {k: v for k, v in dataclasses.asdict(
                           target.validation).items() if v is not None}},
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                if queued:
                    await _requeue(rt, image.id)
            raise
        reservation.start(rt.nursery, lambda: _verify(rt, image.id, task_id, target, queued))
    log.info("LOCATION image=%s store=%s size=%d task=%s: verifying %s", image.id,
             target.store, target.size, task_id, target.validation.os_hash_algo)
    return task


async def _verify(rt: Runtime, image_id: str, task_id: str, target: Target,
                  queued: bool) -> None:
    """The job: hash the location, compare, record it, close the task. Never raises but
    for cancellation (image deleted, shutdown), after which the image is queued again."""
    validation = target.validation
    assert validation is not None
    try:
        await rt.db(rt.tasks.change, task_id, ["pending"], "processing")
        image = await rt.db(rt.registry.get, image_id)
        digests = await _digest(rt, rt.stores.holding(target.store), target, image)
        wrong = [name for name in ("os_hash_value", "checksum")
                 if getattr(validation, name) not in (None, getattr(digests, name))]
        if wrong:
            raise BadRequest(f"{wrong[0]}: ({getattr(validation, wrong[0])}) not matched with "
                             f"actual {wrong[0]}: ({getattr(digests, wrong[0])})")
        if queued:
            await _activate(rt, image_id, target, digests, expected="importing")
        else:
            await rt.db(rt.registry.add_location, image_id, target.store, target.url)
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            if queued:
                await _requeue(rt, image_id)
            if isinstance(exc, StreamdError):
                reason = exc.message
            elif isinstance(exc, Exception):
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "interrupted (the image was deleted, or the server stopped)"
            log.warning("LOCATION image=%s task=%s refused: %s", image_id, task_id, reason)
            await _close_task(rt, image_id, task_id, "failure", reason)
        if not isinstance(exc, Exception):
            raise
        return
    with trio.CancelScope(shield=True):
        await _close_task(rt, image_id, task_id, "success", "")
    log.info("LOCATION image=%s store=%s size=%d task=%s: verified", image_id, target.store,
             target.size, task_id)


async def _requeue(rt: Runtime, image_id: str) -> None:
    """``importing`` back to ``queued`` with no data; a deleted image needs nothing."""
    try:
        await rt.db(rt.registry.transition, image_id, "importing", "queued",
                    {"size": None, "location": None})
    except (NotFound, Conflict):
        pass
    except Exception:
        log.exception("could not put image %s back to queued", image_id)


async def _close_task(rt: Runtime, image_id: str, task_id: str, status: str,
                      message: str) -> None:
    result = {"image_id": image_id} if status == "success" else None
    try:
        await rt.db(rt.tasks.change, task_id, UNFINISHED, status, message=message,
                    result=result, expires_at=rt.tasks.clock() + TASK_TIME_TO_LIVE)
    except (NotFound, Conflict):
        pass
    except Exception:
        log.exception("could not close location task %s of image %s", task_id, image_id)


# -- hashing what a location holds -------------------------------------------------------------


async def _digest(rt: Runtime, store: Store, target: Target, image: ImageRecord,
                  algo: str | None = None, *, inspect: bool = True) -> UploadResult:
    """md5, ``algo`` (default: the validation's) and xxh3 of the ``target.size`` bytes at
    its URL.

    Read once, through the upload pipeline into a ``DiscardStore``: the same hashers, format
    inspection (with ``inspect``: data its ``disk_format`` refuses is refused, 415 in the
    task) and bounded buffers as an upload, nothing kept.
    """
    if algo is None:
        assert target.validation is not None
        algo = target.validation.os_hash_algo
    accept = disk_formats.acceptor(rt.settings, image.disk_format,
                                   image.container_format) if inspect else None
    reader = store.read(target.url, 0, target.size)
    async with contextlib.aclosing(reader):  # type: ignore[type-var]
        result = await rt.store_stream(ChunkCursor(reader), DiscardStore(), key="verify",
                                       size_cap=None, expected_size=target.size,
                                       os_hash_algo=algo, accept=accept)
    return result


# -- PATCH /v2/images/{id} with /locations ops -------------------------------------------------


async def update_image(rt: Runtime, ctx: RequestContext, image_id: str, patch: Any,
                       media_type: str = PATCH_V21) -> ImageRecord:
    """An image PATCH that may carry location ops; without any, ``images.update_image``.

    The location ops are checked first, in order, against the copies as the earlier ops
    leave them (a URL's size is asked); then the field ops are applied (they are checked
    before anything is written); then the location changes are written. A verified add
    (``validation_data``) ends in a job: the answer shows the image ``importing``.
    """
    ops = parse_patch(patch, media_type)
    location_ops = [op for op in ops if op.on_locations]
    if not location_ops:
        return await images.update_image(rt, ctx, image_id, patch, media_type)
    image = await visible_image(rt, ctx, image_id)
    policy.ensure_modifiable(ctx, image, "update")
    plan = _Plan(image)
    for op in location_ops:
        await plan.check(rt, ctx, op)
    field_ops = [op.as_json_patch() for op in ops if not op.on_locations]
    if field_ops:
        image = await images.update_image(rt, ctx, image_id, field_ops, PATCH_V21)
    await plan.carry_out(rt, ctx, image)
    return await rt.db(rt.registry.get, image_id)


@dataclass
class _Plan:
    """The location changes of one PATCH, checked against the image as they leave it."""

    image: ImageRecord
    status: str = ""
    size: int | None = None
    copies: list[StoredCopy] = dataclasses.field(default_factory=list)
    # in the order of the ops: a Target to add, a StoredCopy to remove
    changes: list[Target | StoredCopy] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.status, self.size = self.image.status, self.image.size
        self.copies = list(self.image.locations)

    async def check(self, rt: Runtime, ctx: RequestContext, op: PatchOp) -> None:
        """Glance's order: the value's shape, policy, setting, status, validation data,
        position, then the location itself."""
        if op.op == "remove":
            if not ctx.is_admin:
                raise Forbidden("You are not authorized to complete delete_image_location "
                                "action.")
            self._ensure_setting(rt, "remove")
            self._remove(op.position)
            return
        values = [op.value] if op.op == "add" else op.value
        if not isinstance(values, list) or not all(isinstance(v, Mapping) for v in values):
            raise BadRequest("Invalid locations: add /locations/- takes one "
                             '{"url": …, "metadata": {}} object, replace /locations a list '
                             "of them.")
        entries = [_parse_entry(v) for v in values]
        if not entries:
            raise Forbidden("Cannot set locations to empty list.")
        self._ensure_setting(rt, "add" if op.op == "add" else "update")
        if self.status not in ("queued", "active"):
            verb = "add" if op.op == "add" else "replace"
            raise Conflict(f"It's not allowed to {verb} locations if image status is "
                           f"{self.status}.")
        validation = _merged_validation(rt, self.image, [e[2] for e in entries])
        if op.op == "add" and not _is_position(op.position):
            raise BadRequest("Invalid position for adding a location.")
        if op.op == "replace":
            urls = sorted(url for url, _, _ in entries)
            if urls == sorted(c.location for c in self.copies):
                return  # the same URLs: Glance updates their metadata, which streamd keeps not
            if self.copies:
                raise BadRequest("Original locations is not empty: replace /locations sets "
                                 "the locations of an image that has none (or restates its "
                                 "URLs); add and remove change them one at a time.")
            if len(set(urls)) != len(urls):
                raise BadRequest("Invalid locations: a URL appears twice.")
        quota = rt.settings.image_location_quota
        if len(self.copies) + len(entries) > quota:  # as Glance, before any URL is asked
            raise TooLarge("The limit has been exceeded on the number of allowed image "
                           f"locations. Attempted: {len(self.copies) + len(entries)}, "
                           f"Maximum: {quota} (image_location_quota).")
        for url, store_id, _ in entries:
            if validation is not None and any(isinstance(c, Target) and c.validation
                                              for c in self.changes):
                raise BadRequest("One location with validation_data per request: its data "
                                 "is read to check the hash; add the others afterwards.")
            if self.status == "queued":
                _ensure_formats(self.image)
            target = await check_target(rt, self.image, url, validation, store_id=store_id,
                                        copies=self.copies, size=self.size)
            self.changes.append(target)
            self.size = target.size
            if validation is None:  # a verified one is a copy only once its hash matched
                self.copies.append(StoredCopy(target.store, url))
            if self.status == "queued":
                self.status = "importing" if validation is not None else "active"

    def _ensure_setting(self, rt: Runtime, verb: str) -> None:
        if not rt.settings.show_multiple_locations:
            raise Forbidden(f"It's not allowed to {verb} locations if locations are "
                            "invisible.")

    def _remove(self, position: str | None) -> None:
        if self.status != "active":
            raise Conflict(f"It's not allowed to remove locations if image status is "
                           f"{self.status}.")
        if len(self.copies) == 1:
            raise Forbidden("Cannot remove last location in the image.")
        last = len(self.copies) - 1
        index = last if position == "-" else int(position) if _is_position(position) else -1
        if not 0 <= index <= last:
            raise BadRequest("Invalid position for removing a location.")
        self.changes.append(self.copies.pop(index))

    async def carry_out(self, rt: Runtime, ctx: RequestContext, image: ImageRecord) -> None:
        """Write the checked changes in order: an add (the first one of a queued image
        makes it active, or starts its verification), a remove with its copy's data."""
        for change in self.changes:
            if isinstance(change, Target):
                image = await self._add(rt, ctx, image, change)
                continue
            copy = change
            image = await rt.db(rt.registry.remove_location, image.id, copy.store, ["active"])
            try:
                await rt.stores.holding(copy.store).delete(copy.location)
            except Exception:
                log.exception("image %s: the data of its copy in store %s could not be "
                              "removed", image.id, copy.store)
            log.info("LOCATION image=%s store=%s: removed by PATCH", image.id, copy.store)

    async def _add(self, rt: Runtime, ctx: RequestContext, image: ImageRecord,
                   target: Target) -> ImageRecord:
        if target.validation is not None:
            await _start_verification(rt, ctx, image, target)
            return image
        if image.status == "queued":
            image = await _activate(rt, image.id, target)
        else:
            image = await rt.db(rt.registry.add_location, image.id, target.store, target.url)
        log.info("LOCATION image=%s store=%s size=%d: added by PATCH", image.id,
                 target.store, target.size)
        return image


def _is_position(position: str | None) -> bool:
    return position is not None and (position == "-" or position.isdigit())


def _parse_entry(value: Mapping[str, Any]) -> tuple[str, str | None, Validation | None]:
    """One location of a PATCH: Glance's schema (``url``, ``metadata`` required; optional
    ``validation_data``); ``metadata.store`` may name the http store."""
    for name in ("url", "metadata"):
        if name not in value:
            raise BadRequest(f"Provided object does not match schema 'image': '{name}' is a "
                             "required property (a location is {\"url\": …, \"metadata\": "
                             "{}}).")
    url, metadata = value["url"], value["metadata"]
    if not isinstance(url, str) or not isinstance(metadata, Mapping):
        raise BadRequest("Provided object does not match schema 'image': a location's url "
                         "is a string and its metadata an object.")
    store = metadata.get("store")
    if store is not None and not isinstance(store, str):
        raise BadRequest("Invalid location: metadata.store names a store by its id.")
    data = value.get("validation_data")
    if data is None:
        return url, store, None
    if not isinstance(data, Mapping) or set(data) - {"checksum", "os_hash_algo",
                                                      "os_hash_value"}:
        raise BadRequest("validation_data has checksum, os_hash_algo and os_hash_value only.")
    if not ("os_hash_algo" in data and "os_hash_value" in data):
        raise BadRequest("Provided object does not match schema 'image': validation_data "
                         "needs os_hash_algo and os_hash_value.")
    if not all(isinstance(v, str) for v in data.values()):
        raise BadRequest("validation_data's values are strings.")
    return url, store, Validation(data["os_hash_algo"], data["os_hash_value"],
                                  data.get("checksum"))


def _merged_validation(rt: Runtime, image: ImageRecord,
                       given: Sequence[Validation | None]) -> Validation | None:
    """Glance's ``_validate_validation_data``: one set of values for every location (409
    when two differ), each equal to the image's or new on a queued image only, new ones
    with this cloud's ``os_hash_algo`` and well-formed digests (409 otherwise)."""
    merged: dict[str, str] = {}
    for validation in given:
        if validation is None:
            continue
        for key, value in dataclasses.asdict(validation).items():
            if value is None:
                continue
            if merged.get(key, value) != value:
                raise Conflict(f"Conflicting values for {key}")
            merged[key] = value
    if not merged:
        return None
    new = {k: v for k, v in merged.items() if getattr(image, k) != v}
    for key in new:
        if getattr(image, key):
            raise Conflict(f"{key} is already set with a different value")
    if new and image.status != "queued":
        raise Conflict(f"New value(s) for {', '.join(new)} may only be provided when image "
                       "status is 'queued'")
    if new:
        algo = merged["os_hash_algo"]
        if algo != rt.settings.os_hash_algo:
            raise Conflict(f"os_hash_algo must be {rt.settings.os_hash_algo}, not {algo}")
        if "checksum" in merged:
            _check_digest("checksum", merged["checksum"], "md5", Conflict)
        if algo in _DIGEST_BYTES:
            _check_digest("os_hash_value", merged["os_hash_value"], algo, Conflict)
    return Validation(merged["os_hash_algo"], merged["os_hash_value"].lower(),
                      (merged.get("checksum") or "").lower() or None)


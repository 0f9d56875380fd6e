"""Per-project quotas, as Glance's unified limits: images owned, bytes stored, bytes staged.

Each limit is a setting (``quota_image_count``, ``quota_image_size_total``,
``quota_image_stage_total``; unset means unlimited) that applies to every project, counted
over the images the project owns. Exceeding one answers 413 with a message that names the
quota. The image count is checked when an image is created; the staged bytes when data is
staged (as the stored bytes, over what the staging area holds); the bytes when data is
uploaded: before any data is accepted (a project already at its limit, or a
Content-Length past what is left) and during the upload, whose size cap becomes
``min(image_size_cap, what is left)``.

Like Glance's, the checks read the usage and then act, so uploads running at the same time
for one project may together overshoot the byte quota by what each had left at its start.

``GET /v2/info/usage`` reports the same figures in Glance's shape and units: sizes in MiB,
``-1`` for no limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamd.context import RequestContext
from streamd.errors import TooLarge
from streamd.registry import Filter, ImageQuery, Usage, Viewer, project_usage
from streamd.service.runtime import Runtime
from streamd.units import MiB

UNLIMITED = -1  # Keystone's unified limits write "no limit" so
STAGING_STATUSES = ("uploading", "importing")  # statuses of an image that may hold a stage


class QuotaExceeded(TooLarge):
    """A project is at one of its quotas. Retrying helps only after freeing some of it."""


@dataclass(frozen=True)
class QuotaUsage:
    limit: int  # UNLIMITED when there is none
    usage: int


@dataclass(frozen=True)
class ByteCap:
    """The ``size_cap`` one transfer runs under, and whether the owner's quota set it.

    The cap is the least of ``image_size_cap``, where the owner's quota ends (``quota``,
    counted as the pipeline counts: a resumed stage's pipeline starts at byte 0 of the
    image; None: no quota) and, for a stage request, where its Content-Range ends
    (``body``). When the pipeline stops at the cap (``SizeCapExceeded``), the client is
    told of the quota (413, naming it) only if the quota set the cap; otherwise the
    pipeline's own error stands.
    """

    image_size_cap: int
    quota: int | None = None
    body: int | None = None

    @property
    def size_cap(self) -> int:
        return min(c for c in (self.body, self.quota, self.image_size_cap) if c is not None)

    @property
    def set_by_quota(self) -> bool:
        return self.quota is not None and self.size_cap == self.quota < self.image_size_cap


async def usage_of(rt: Runtime, owner: str) -> Usage:
    return await rt.db(project_usage, rt.registry.engine, owner)


async def ensure_may_create(rt: Runtime, owner: str | None) -> None:
    """413 when ``owner`` already has ``quota_image_count`` images."""
    limit = rt.settings.quota_image_count
    if limit is None or owner is None:
        return
    count = (await usage_of(rt, owner)).image_count
    if count + 1 > limit:
        raise QuotaExceeded(
            f"Project {owner} is over a limit for image_count_total (quota_image_count): it "
            f"owns {count} images and may own {limit}. Delete images it no longer needs, or "
            "ask an admin to raise the quota."
        )


async def remaining_bytes(rt: Runtime, owner: str | None) -> int | None:
    """Bytes ``owner`` may still upload under ``quota_image_size_total``; None: no limit."""
    limit = rt.settings.quota_image_size_total
    if limit is None or owner is None:
        return None
    return max(0, limit - (await usage_of(rt, owner)).image_size_total)


async def staged_bytes(rt: Runtime, owner: str) -> int:
    """Bytes staged for import by ``owner``'s images (complete and partial stages alike).

    The staging area, not the registry, knows how much a partial stage holds; the registry
    says which images may have one (``uploading`` or ``importing``).
    """
    query = ImageQuery(
        viewer=Viewer(project_id=None, is_admin=True),
        filters=(Filter("owner", "eq", owner), Filter("status", "in", STAGING_STATUSES),
                 Filter("os_hidden", "in", (True, False))),
        limit=rt.settings.api_limit_max,
    )
    total = 0
    for record in await rt.db(rt.registry.list, query):
        stage = await rt.staging.stage(record.id)
        total += stage.size if stage is not None else 0
    return total


async def remaining_stage_bytes(rt: Runtime, owner: str | None) -> int | None:
    """Bytes ``owner`` may still stage under ``quota_image_stage_total``; None: no limit."""
    limit = rt.settings.quota_image_stage_total
    if limit is None or owner is None:
        return None
    return max(0, limit - await staged_bytes(rt, owner))


def stage_quota_exceeded(rt: Runtime, owner: str | None, remaining: int) -> QuotaExceeded:
    limit = rt.settings.quota_image_stage_total
    return QuotaExceeded(
        f"Project {owner} is over a limit for image_stage_total (quota_image_stage_total): "
        f"its stages hold {(limit or 0) - remaining} of its {limit} bytes, and this stage "
        f"does not fit in the {remaining} bytes left. Import or delete staged images, or ask "
        "an admin to raise the quota."
    )


def size_quota_exceeded(rt: Runtime, owner: str | None, remaining: int,
                        incoming: int | None = None) -> QuotaExceeded:
    limit = rt.settings.quota_image_size_total
    stored = (limit or 0) - remaining
    what = (f"this upload of {incoming} bytes" if incoming is not None
            else "this upload")
    return QuotaExceeded(
        f"Project {owner} is over a limit for image_size_total (quota_image_size_total): its "
        f"images hold {stored} of its {limit} bytes, so {what} does not fit in the "
        f"{remaining} bytes left. Delete images it no longer needs, or ask an admin to raise "
        "the quota."
    )


async def usage_report(rt: Runtime, ctx: RequestContext) -> dict[str, QuotaUsage]:
    """The caller's project's usage and limits, as Glance's ``/v2/info/usage``."""
    if ctx.project_id is None:
        return {}
    settings = rt.settings
    usage = await usage_of(rt, ctx.project_id)

    def mib(value: int | None) -> int:
        return UNLIMITED if value is None else value // MiB

    return {
        "image_size_total": QuotaUsage(mib(settings.quota_image_size_total),
                                       usage.image_size_total // MiB),
        "image_stage_total": QuotaUsage(mib(settings.quota_image_stage_total),
                                        await staged_bytes(rt, ctx.project_id) // MiB),
        "image_count_total": QuotaUsage(
            UNLIMITED if settings.quota_image_count is None else settings.quota_image_count,
            usage.image_count),
        "image_count_uploading": QuotaUsage(UNLIMITED, usage.image_count_uploading),
    }

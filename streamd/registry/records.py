"""Plain, immutable views of registry rows: what the rest of streamd gets back from the registry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# Image fields that are columns (Glance's "core" properties) and may be written by the service.
CORE_FIELDS = (
    "name",
    "status",
    "visibility",
    "owner",
    "size",
    "virtual_size",
    "disk_format",
    "container_format",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "xxh3",
    "location",
    "store",
    "min_disk",
    "min_ram",
    "protected",
    "os_hidden",
)


@dataclass(frozen=True)
class ImageRecord:
    id: str
    name: str | None
    status: str
    visibility: str
    owner: str | None
    size: int | None
    virtual_size: int | None
    disk_format: str | None
    container_format: str | None
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    xxh3: str | None
    location: str | None
    store: str | None
    min_disk: int
    min_ram: int
    protected: bool
    os_hidden: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    properties: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemberRecord:
    """A project a shared image is offered to (``member_id``) and its answer (``status``)."""

    image_id: str
    member_id: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Usage:
    """What a project's images take up: the figures per-project quotas are checked against."""

    image_count: int  # images the project owns, whatever their status
    image_size_total: int  # bytes of data of the project's images
    image_count_uploading: int  # images of the project receiving data now


@dataclass(frozen=True)
class Viewer:
    """Whose listing this is: admins see every image, others their own and public ones."""

    project_id: str | None
    is_admin: bool = False


@dataclass(frozen=True)
class Filter:
    """One listing filter: ``field op value`` (op: eq, neq, gt, gte, lt, lte, in)."""

    field: str
    op: str
    value: object


@dataclass(frozen=True)
class ImageQuery:
    viewer: Viewer
    filters: tuple[Filter, ...] = ()
    tags: tuple[str, ...] = ()  # every tag must be present
    properties: tuple[tuple[str, str], ...] = ()  # custom property equality filters
    sort: tuple[tuple[str, str], ...] = (("created_at", "desc"), ("id", "desc"))
    marker: str | None = None
    limit: int = 25
    # which of the shared images offered to the viewer a listing includes, by the viewer's
    # answer: pending, accepted, rejected or all (admins' listings ignore it, as Glance's)
    member_status: str = "accepted"

"""Plain, immutable views of registry rows: what the rest of streamd gets back from the registry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Image fields that are columns of ``images`` (Glance's "core" properties) and may be written
# by the service.
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
    "min_disk",
    "min_ram",
    "protected",
    "os_hidden",
)
# (``create``/``update``/``transition`` also take ``location`` and ``store``, which are no
# column: the copy of freshly written data, stored as the image's ``image_locations`` row.)


# Visibilities every project sees, whoever owns the image.
OPEN_VISIBILITIES = ("public", "community")
# The visibility whose images are seen by the projects they are offered to (their members).
MEMBERS_VISIBILITY = "shared"


@dataclass(frozen=True)
class StoredCopy:
    """One copy of an image's data: ``location`` in the store whose id is ``store``."""

    store: str
    location: str


@dataclass(frozen=True)
class _ImageFields:
    """The fields of an ImageRecord (see there); the dataclass machinery lives here."""

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
    min_disk: int
    min_ram: int
    protected: bool
    os_hidden: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    properties: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # every copy of the data, oldest first (then by store id); empty while there is none
    locations: tuple[StoredCopy, ...] = ()


_UNSET: Any = object()


class ImageRecord(_ImageFields):
    """An image as the registry holds it, with every copy of its data (``locations``).

    ``location`` and ``store`` name the first copy, as the single copy of the time before
    multi-store did, and are still accepted by the constructor (so also by
    ``dataclasses.replace``): ``replace(record, location=None)`` is the image without data,
    ``ImageRecord(…, location=l, store=s)`` the image with the one copy ``(s, l)``.
    """

    def __init__(self, *args: Any, location: str | None = _UNSET, store: str | None = _UNSET,
                 **kwargs: Any) -> None:
        if location is not _UNSET or store is not _UNSET:
            kwargs["locations"] = _one_copy(location, store, kwargs.get("locations", ()))
        super().__init__(*args, **kwargs)

    @property
    def location(self) -> str | None:
        """Where the first copy is, in ``store``; None when the image has no data."""
        return self.locations[0].location if self.locations else None

    @property
    def store(self) -> str | None:
        """The store of the first copy; None when the image has no data."""
        return self.locations[0].store if self.locations else None

    @property
    def stores(self) -> tuple[str, ...]:
        """The ids of the stores holding a copy (Glance's ``stores`` image property)."""
        return tuple(copy.store for copy in self.locations)


def _one_copy(location: str | None, store: str | None,
              current: tuple[StoredCopy, ...]) -> tuple[StoredCopy, ...]:
    """The copies of a record made with the single-copy ``location``/``store`` arguments.

    Unset ones keep the first current copy's value (``replace(r, location=…)`` moves it).
    """
    first = current[0] if current else None
    if location is _UNSET:
        location = first.location if first else None
    if store is _UNSET:
        store = first.store if first else None
    if location is None:
        return ()
    if store is None:
        raise ValueError("a copy of image data needs the store it is in")
    return (StoredCopy(store, location),)


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
    """Who is looking at images, and the one statement of which images they may see.

    Glance's rule: admins see every image; a project sees its own images, every image of an
    ``OPEN_VISIBILITIES`` visibility, the ``shared`` images offered to it (whatever it
    answered: pending, accepted or rejected) and, as in Glance, images without an owner.
    ``streamd.policy`` asks it for single images; the registry's listing scopes are its
    narrower form in SQL (``streamd.registry.images``).
    """

    project_id: str | None
    is_admin: bool = False

    def owns(self, image: ImageRecord) -> bool:
        return self.project_id is not None and image.owner == self.project_id

    def needs_membership(self, image: ImageRecord) -> bool:
        """Does seeing ``image`` depend on whether the viewer is one of its members?"""
        return (self.project_id is not None and image.visibility == MEMBERS_VISIBILITY
                and not self._sees_regardless(image))

    def sees(self, image: ImageRecord, is_member: bool = False) -> bool:
        """``is_member``: the viewer's project has a member entry of ``image``."""
        return self._sees_regardless(image) or (is_member and self.needs_membership(image))

    def _sees_regardless(self, image: ImageRecord) -> bool:
        """Seen whether or not the viewer is a member."""
        return (self.is_admin or image.owner is None or self.owns(image)
                or image.visibility in OPEN_VISIBILITIES)


@dataclass(frozen=True)
class Filter:
    """One listing filter: ``field op value`` (op: eq, neq, gt, gte, lt, lte, in)."""

    field: str
    op: str
    value: object


# Glance's sort keys, the ones ``GET /v2/images`` accepts (in the order its errors name
# them); the registry orders by these and a few more columns (``registry.images.SORT_KEYS``).
GLANCE_SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id",
                    "created_at", "updated_at")


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

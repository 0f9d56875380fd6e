"""Glance's rules for what an image's data may be, given its declared formats.

The data plane says what the bytes are (``streamd.io.inspection``); this module decides
whether an image that declares ``disk_format`` and ``container_format`` may hold them, as
Glance 33's ``ImageProxy.set_data`` does (ask it: ``tests/glance_inspection.py`` records its
answers):

- only ``container_format=bare`` is inspected (a container's bytes are not a disk);
- the data must be its ``disk_format``; ``raw`` takes any format (a disk image of another
  format is a valid raw disk to a hypervisor told it is raw) but its safety checks still
  apply, and non-inspectable formats (ami, ari, aki, ploop) take data no format matched;
- a format's safety checks must pass: qcow2 without backing file or external data file or
  unknown features, vmdk only ``monolithicSparse`` / ``streamOptimized`` (and only those in
  ``vmdk_allowed_types``) with no extent that names a path, a sane MBR in front of a GPT
  (``mbr`` is not fatal for ``aki``/``ari``, whose kernels may carry a bogus one), no qed;
- ``virtual_size`` is the format's (raw: the bytes, as Glance's ``actual_size``).

A refusal is ``ImageRefused`` (415), raised before the data is committed to the store, so a
refused upload leaves nothing: the image stays ``queued`` and a valid upload may follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from streamd.config import Settings
from streamd.errors import UnsupportedMediaType
from streamd.io.inspection import INSPECTABLE_FORMATS, DiskInspection

INSPECTABLE = INSPECTABLE_FORMATS  # disk formats oslo can recognise
GPT_NONFATAL: frozenset[str] = frozenset()  # Glance's gpt_safety_checks_nonfatal default


class ImageRefused(UnsupportedMediaType):
    """The data is not what the image declares, or is unsafe: 415, nothing stored."""

    def __init__(self, message: str, inspection: DiskInspection) -> None:
        super().__init__(message)
        self.inspection = inspection


def inspected(container_format: str | None) -> bool:
    """Whether data of this container format is inspected at all (Glance: bare only)."""
    return container_format == "bare"


def _found(insp: DiskInspection) -> str:
    if insp.format is None:
        listed = ", ".join(insp.formats)
        if not listed:
            return "data of no known format"
        return f"data whose format could not be told ({listed})"
    size = f", virtual size {insp.virtual_size} bytes" if insp.virtual_size else ""
    sub = f" ({insp.subformat})" if insp.subformat else ""
    return f"{insp.format}{sub} data of {insp.actual_size} bytes{size}"


def virtual_size(settings: Settings, disk_format: str, container_format: str,
                 insp: DiskInspection) -> int | None:
    """The image's ``virtual_size`` if ``insp`` is acceptable for its formats; else raise
    ``ImageRefused`` saying what was found and why it is refused. None: not known (not
    inspected, or a format oslo does not size)."""
    if not inspected(container_format):
        return None
    found = _found(insp)
    size: int | None = None
    if insp.format is None:
        if settings.require_image_format_match:
            raise ImageRefused(
                f"Image data refused: disk_format is {disk_format} but the upload is {found}: "
                f"{insp.error}.", insp)
        return None
    if insp.format == disk_format:
        size = insp.virtual_size or None
    elif insp.format == "raw" and disk_format not in INSPECTABLE:
        pass  # ami, aki, ari, ploop: not inspectable, anything unrecognised goes
    elif disk_format == "raw":
        size = insp.actual_size or None  # a rich format declared raw is sized as raw
    elif settings.require_image_format_match:
        raise ImageRefused(
            f"Image disk_format {disk_format} does not match stream data {insp.format}: the "
            f"upload is {found}. Create the image with disk_format {insp.format}, or upload "
            f"{disk_format} data.", insp)
    else:
        return None
    _check_safety(settings, disk_format, insp, found)
    return size


def _check_safety(settings: Settings, disk_format: str, insp: DiskInspection,
                  found: str) -> None:
    if insp.error is not None:
        if settings.require_image_format_match:
            raise ImageRefused(f"Image data refused: disk_format is {disk_format} and the upload "
                               f"is {found}, which could not be safety checked: {insp.error}.",
                               insp)
        return
    fatal = set(insp.failures) - GPT_NONFATAL
    if disk_format in ("aki", "ari"):
        fatal.discard("mbr")  # kernels may carry an intentionally invalid MBR
    if insp.failures and (fatal or insp.format != "gpt"):
        reasons = "; ".join(f"{check}: {why}" for check, why in sorted(insp.failures.items()))
        raise ImageRefused(f"Image failed safety checks: disk_format is {disk_format} and the "
                           f"upload is {found}, refused because of {reasons}.", insp)
    if insp.format == "vmdk":
        allowed = {t.lower() for t in settings.vmdk_allowed_types}
        if insp.subformat not in allowed:
            raise ImageRefused(
                f"Image failed safety checks: disk_format is {disk_format} and the upload is "
                f"{found}, a vmdk createType this "
                f"cloud does not accept (vmdk_allowed_types: "
                f"{', '.join(settings.vmdk_allowed_types) or 'none'}).", insp)


def acceptor(settings: Settings, disk_format: str | None, container_format: str | None,
             ) -> Callable[[DiskInspection], None] | None:
    """The check the upload pipeline runs on the finished inspection before it commits the
    data (None: no inspection, for non-bare containers or ``inspect_image_data`` off)."""
    if not settings.inspect_image_data or not inspected(container_format) or not disk_format:
        return None
    declared = (disk_format, container_format or "")

    def accept(insp: DiskInspection) -> None:
        virtual_size(settings, *declared, insp)

    return accept


class _Declared(Protocol):
    """An image's declared formats (an ``ImageRecord``)."""

    @property
    def disk_format(self) -> str | None: ...
    @property
    def container_format(self) -> str | None: ...


def stored_virtual_size(settings: Settings, image: _Declared,
                        inspection: DiskInspection | None) -> int | None:
    """The ``virtual_size`` to record for data ``acceptor`` let through (None: unknown)."""
    if inspection is None or not image.disk_format:
        return None
    return virtual_size(settings, image.disk_format, image.container_format or "", inspection)


def judge(settings: Settings, image: _Declared, inspection: DiskInspection) -> int | None:
    """``acceptor``'s check for data inspected earlier (a stage): raise ``ImageRefused`` or
    return the ``virtual_size`` to record."""
    accept = acceptor(settings, image.disk_format, image.container_format)
    if accept is None:
        return None
    accept(inspection)
    return stored_virtual_size(settings, image, inspection)

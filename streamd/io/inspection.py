"""What a disk image's bytes are: format, virtual size and safety, found while they stream.

A qcow2 with a backing file or an external data file, or a vmdk whose extents name host
paths, makes the hypervisor that opens it read host files (CVE-2024-32498); ``virtual_size``
is what Nova needs to size a disk. Both are read from the image's headers by oslo.utils'
``format_inspector`` (the inspector Glance uses), fed the upload's chunks as they pass, so
no byte is read twice. Its inspectors only copy the few header regions they need, so memory
stays a few hundred KiB per transfer whatever the image size.

This module only says what was found (``DiskInspection``); whether that is acceptable for an
image that declares a ``disk_format`` is the service's decision
(``streamd.service.disk_formats``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import oslo_utils.imageutils

LUKS_MODULE = "oslo_utils.imageutils._luks"


class _LuksOnDemand(types.ModuleType):
    """oslo's LUKS helpers, loaded the first time a LUKS image needs one of them.

    ``format_inspector`` imports its ``_luks`` module at once, and that imports
    ``cryptography`` (~6.7 MiB of RSS in every server process, most of it the Rust
    extension's pages), which only the decryption of a LUKS image with a passphrase uses;
    streamd never passes one. ``LUKSHeader`` is a ``TypedDict`` the inspector names in an
    annotation evaluated when its class is made and in a ``cast``: at run time it is
    ``dict``. Any other name loads the real module (and so ``cryptography``) in place.
    """

    def __getattr__(self, name: str) -> Any:
        if name == "LUKSHeader":
            return dict
        if name.startswith("__"):
            raise AttributeError(name)
        spec = importlib.machinery.PathFinder.find_spec(
            LUKS_MODULE, oslo_utils.imageutils.__path__)
        if spec is None or spec.loader is None:
            raise AttributeError(f"{LUKS_MODULE} not found, so no {name}")
        real = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(real)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


if "oslo_utils.imageutils.format_inspector" not in sys.modules:
    sys.modules.setdefault(LUKS_MODULE, _LuksOnDemand(LUKS_MODULE))

from oslo_utils.imageutils import format_inspector as fi  # noqa: E402  (after the above)

log = logging.getLogger(__name__)

__all__ = ["INSPECTABLE_FORMATS", "DiskInspection", "DiskInspector"]

INSPECTABLE_FORMATS = frozenset(fi.ALL_FORMATS)  # the disk formats oslo can recognise


@dataclass(frozen=True)
class DiskInspection:
    """What the inspector found in a complete image.

    ``format`` is the one format the data is (``raw`` when nothing more specific matched;
    ``iso`` for an ISO with a GPT in front, as bootable ISOs have), or None when it could
    not be told (``error`` says why: several formats at once, a header that does not
    parse). ``virtual_size`` is that format's disk size (0: unknown), ``actual_size`` the
    bytes inspected. ``failures`` maps each failed safety check of that format to its reason
    (``error`` is set instead when the checks could not run at all). ``subformat`` is a
    vmdk's ``createType``, lowercased.
    """

    format: str | None
    virtual_size: int = 0
    actual_size: int = 0
    formats: tuple[str, ...] = ()  # every format that matched
    failures: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    subformat: str | None = None

    @property
    def safe(self) -> bool:
        """True when the format is known and every one of its safety checks passed."""
        return self.format is not None and self.error is None and not self.failures

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (a stage keeps it beside its digests)."""
        return {"format": self.format, "virtual_size": self.virtual_size,
                "actual_size": self.actual_size, "formats": list(self.formats),
                "failures": dict(self.failures), "error": self.error,
                "subformat": self.subformat}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiskInspection:
        return cls(format=data.get("format"), virtual_size=int(data.get("virtual_size") or 0),
                   actual_size=int(data.get("actual_size") or 0),
                   formats=tuple(data.get("formats") or ()),
                   failures=dict(data.get("failures") or {}), error=data.get("error"),
                   subformat=data.get("subformat"))


HEADER = 512  # the first sector: every inspector's header is within it


class _OneChunk:
    """The source ``InspectWrapper`` reads from: the chunk the pipeline just lent it."""

    def __init__(self) -> None:
        self.chunk: memoryview | bytes = b""

    def read(self, size: int) -> memoryview | bytes:
        chunk, self.chunk = self.chunk, b""
        return chunk


class DiskInspector:
    """Feed it every chunk of an image in order (``eat``), then ``finish`` once.

    All of oslo's inspectors look at each chunk (``InspectWrapper``, through its public
    ``read``); one whose format the data is not drops out at its first parse error. A chunk
    is only looked at during ``eat``: the inspectors copy what they keep, so the caller may
    reuse its buffer afterwards.
    """

    def __init__(self) -> None:
        self._feed = _OneChunk()
        self._wrapper = fi.InspectWrapper(self._feed)  # type: ignore[arg-type]
        self._finished: DiskInspection | None = None
        self._fed = 0

    def eat(self, chunk: memoryview | bytes) -> None:
        """Inspect the next ``chunk`` of the image."""
        if self._finished is not None:
            raise RuntimeError("the inspection is finished; no more data may be fed")
        if self._fed < HEADER and len(chunk) > HEADER - self._fed:
            # the first sector on its own: oslo's vmdk inspector captures up to 1 MiB from
            # byte 0 as a possible text descriptor until its 512-byte header proves the data
            # is no vmdk, and keeps what it captured; told sooner, it keeps nothing (1 MiB
            # less per upload). The inspectors are built to take the bytes in any pieces.
            head = HEADER - self._fed
            self._eat(chunk[:head])
            chunk = chunk[head:]
        self._eat(chunk)

    def _eat(self, chunk: memoryview | bytes) -> None:
        self._feed.chunk = chunk
        self._wrapper.read(len(chunk))
        self._fed += len(chunk)

    def finish(self) -> DiskInspection:
        """The end of the data: what it is (computed once; later calls return the same)."""
        if self._finished is None:
            self._wrapper.close()
            self._finished = _conclude(self._wrapper)
        return self._finished


def _conclude(wrapper: fi.InspectWrapper) -> DiskInspection:
    """Glance's reading of a finished ``InspectWrapper`` (``ImageProxy.set_data``)."""
    try:
        matches = wrapper.formats or []
    except fi.ImageFormatError as exc:
        return DiskInspection(format=None, error=str(exc))
    names = tuple(sorted(str(i) for i in matches))
    by_name = {str(i): i for i in matches}
    try:
        if set(by_name) == {"iso", "gpt"}:
            inspector = by_name["iso"]  # a bootable ISO may carry a GPT bootloader in front
        else:
            inspector = wrapper.format  # several formats at once: ImageFormatError
            if inspector is None:
                raise fi.ImageFormatError("The end of the data came before the format was known")
        name = str(inspector)
        virtual_size = int(inspector.virtual_size or 0)
        actual_size = int(inspector.actual_size)
        subformat = getattr(inspector, "vmdktype", None) if name == "vmdk" else None
    except fi.ImageFormatError as exc:
        return DiskInspection(format=None, formats=names, error=str(exc))
    except Exception as exc:  # a header that makes an inspector fail: as Glance, unknown
        log.warning("format inspection failed: %r", exc)
        return DiskInspection(format=None, formats=names,
                              error=f"Image format inspection failed ({type(exc).__name__})")
    failures: dict[str, str] = {}
    error = None
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        failures = {check: str(reason) for check, reason in exc.failures.items()}
    except fi.ImageFormatError as exc:
        error = str(exc)
    except Exception as exc:
        log.warning("format safety check failed: %r", exc)
        error = f"Image safety check failed ({type(exc).__name__})"
    return DiskInspection(format=name, virtual_size=virtual_size, actual_size=actual_size,
                          formats=names, failures=failures, error=error, subformat=subformat)

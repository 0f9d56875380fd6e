"""The registry values that record an image's data once it is complete in a store.

An upload, a glance-direct import (with the digests computed while staging) and a
web-download all end the same way: one conditional update that says where the bytes are,
how many there are, their digests and the disk size their format says
(``streamd.service.disk_formats``). The fields are named here once, so that the three
cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Protocol


class Digests(Protocol):
    """The digests computed while the data streamed (lowercase hex): an ``UploadResult``
    or a stage's ``StagedDigests``."""

    @property
    def checksum(self) -> str: ...  # md5, for Glance clients
    @property
    def os_hash_algo(self) -> str: ...
    @property
    def os_hash_value(self) -> str: ...
    @property
    def xxh3(self) -> str: ...  # xxh3-128, for cache and replica verification


def registry_values(
    store: str, location: str, size: int, digests: Digests, *, virtual_size: int | None = None,
) -> dict[str, Any]:
    """The image fields for ``size`` bytes at ``location`` in the store named ``store``;
    ``virtual_size`` as the format inspection found it (None: unknown)."""
    return {
        "size": size,
        "virtual_size": virtual_size,
        "checksum": digests.checksum,
        "os_hash_algo": digests.os_hash_algo,
        "os_hash_value": digests.os_hash_value,
        "xxh3": digests.xxh3,
        "location": location,
        "store": store,
    }

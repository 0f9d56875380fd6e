"""ImageRecords for unit tests, without a registry."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from streamd.registry.records import ImageRecord

_BASE = ImageRecord(
    id="6a3b4b0e-3c0e-4c47-9d0c-3b7f2a1c9e01", name="cirros", status="queued",
    visibility="shared", owner="p1", size=None, virtual_size=None, disk_format="qcow2",
    container_format="bare", checksum=None, os_hash_algo=None, os_hash_value=None,
    xxh3=None, location=None, store=None, min_disk=0, min_ram=0, protected=False,
    os_hidden=False, created_at=dt.datetime(2024, 1, 31, 12, 0, 0),
    updated_at=dt.datetime(2024, 1, 31, 12, 30, 5), properties={"foo": "bar"}, tags=("a",),
)


def record(**changes: Any) -> ImageRecord:
    return replace(_BASE, **changes)

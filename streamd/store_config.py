"""The stores a server keeps image data in: ``[stores.<id>]`` tables of the settings.

::

    default_store = "swift1"

    [stores.local]
    type = "file"
    path = "/var/lib/streamd/images"

    [stores.swift1]
    type = "swift"
    description = "Swift in region one"
    auth_url = "http://swift.example:8080/auth/v1.0"
    user = "images:streamd"
    key = "…"                 # or STREAMD_STORES__SWIFT1__KEY

    [stores.web]
    type = "http"             # read-only: images whose locations are URLs (no options)
    description = "images served by web servers"

Every store has ``cached``: whether downloads go through this node's read-through cache
(``streamd.service.cache``); true by default for swift, s3 and http stores, false for a
file store (set it for one on NFS). An ``http`` store takes no other options: which URLs
it may read is what web-download may fetch (the ``web_download_*`` settings: schemes,
hosts, ports, and ``web_download_private_hosts`` for loopback or private addresses), since
both fetch URLs that users hand the server.

With no ``[stores]`` table a server has one file store, ``file``, under ``data_dir/images``,
as before multi-store. Options are checked here, once, by type, so that a typo stops
start-up with a message naming the store and the option; secrets may come from
``STREAMD_STORES__<ID>__<OPTION>`` variables instead of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streamd.setting_values import convert
from streamd.units import MiB

STORE_TYPES = ("file", "swift", "s3", "http")
# option -> (type, default); a default of ... means required
_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "file": {
        "path": (Path, None),  # None: data_dir/images (only one file store may omit it)
        "cached": (bool, False),  # a file store on NFS is remote too: cache it
    },
    "swift": {
        "auth_url": (str, None),
        "user": (str, None),
        "key": (str, None),
        "auth_version": (int, 1),
        "project": (str, None),
        "user_domain": (str, "Default"),
        "project_domain": (str, "Default"),
        "region": (str, None),
        "storage_url": (str, None),
        "token": (str, None),
        "container": (str, "streamd"),
        "segment_size": (int, 200 * MiB),
        "create_container": (bool, True),
        "cached": (bool, True),
    },
    "s3": {
        "endpoint": (str, None),
        "bucket": (str, ...),
        "access_key": (str, None),
        "secret_key": (str, None),
        "region": (str, "us-east-1"),
        "addressing_style": (str, "path"),
        "prefix": (str, ""),
        "part_size": (int, 8 * MiB),
        "parts_in_flight": (int, 2),
        "create_bucket": (bool, True),
        "verify_tls": (bool, True),
        "cached": (bool, True),
    },
    "http": {"cached": (bool, True)},  # its URL filters are the web_download_* settings
}
_COMMON = {"type", "description"}
SECRET_OPTIONS = frozenset({"key", "token", "secret_key"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class StoreConfigError(ValueError):
    """A store table is wrong; the message names the store and the option."""


@dataclass(frozen=True)
class StoreSpec:
    """One configured store: its id, type, description and checked options."""

    id: str
    type: str
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def option(self, name: str) -> Any:
        return self.options[name]

    def public_options(self) -> dict[str, Any]:
        """The options without secrets, for ``/v2/info/stores/detail`` and logs (nor
        ``cached``: the store's own options, as Glance lists them)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.items()
                if k not in SECRET_OPTIONS and k != "cached" and v is not None}


DEFAULT_FILE_STORE = StoreSpec(id="file", type="file", description="local file store",
                               options=MappingProxyType({"path": None, "cached": False}))


def parse_stores(
    tables: Mapping[str, Any] | None, env: Mapping[str, str]
) -> tuple[StoreSpec, ...]:
    """``[stores.<id>]`` tables (plus secrets from the environment) as checked specs."""
    merged: dict[str, dict[str, Any]] = {}
    for store_id, table in (tables or {}).items():
        if not isinstance(table, Mapping):
            raise StoreConfigError(f"[stores.{store_id}] must be a table")
        merged[store_id] = dict(table)
    for key, value in env.items():
        if not key.startswith("STREAMD_STORES__"):
            continue
        parts = key[len("STREAMD_STORES__"):].split("__")
        if len(parts) != 2:
            raise StoreConfigError(f"environment variable {key}: use "
                                   "STREAMD_STORES__<ID>__<OPTION>")
        store_id = next((s for s in merged if s.lower() == parts[0].lower()), parts[0].lower())
        merged.setdefault(store_id, {})[parts[1].lower()] = value
    if not merged:
        return (DEFAULT_FILE_STORE,)
    specs = tuple(_spec(store_id, table) for store_id, table in merged.items())
    pathless = [s.id for s in specs if s.type == "file" and s.options["path"] is None]
    if len(pathless) > 1:
        raise StoreConfigError(f"stores {', '.join(pathless)}: only one file store may leave "
                               "out path (it gets data_dir/images)")
    return specs


def _spec(store_id: str, table: Mapping[str, Any]) -> StoreSpec:
    where = f"store {store_id!r}"
    if not _ID.fullmatch(store_id):
        raise StoreConfigError(f"{where}: an id is 1-64 letters, digits, '-' or '_'")
    kind = table.get("type")
    if kind not in STORE_TYPES:
        raise StoreConfigError(f"{where}: type must be one of {', '.join(STORE_TYPES)} "
                               f"(got {kind!r})")
    allowed = _OPTIONS[kind]
    unknown = sorted(set(table) - set(allowed) - _COMMON)
    if unknown:
        raise StoreConfigError(f"{where}: unknown option(s) {', '.join(unknown)} for a {kind} "
                               f"store (known: {', '.join(sorted(allowed))})")
    options: dict[str, Any] = {}
    for name, (typ, default) in allowed.items():
        if name not in table:
            if default is ...:
                raise StoreConfigError(f"{where}: option {name!r} is required for a {kind} "
                                       "store")
            options[name] = default
            continue
        options[name] = _convert(where, name, typ, table[name])
    _check(where, kind, options)
    description = str(table.get("description", ""))
    return StoreSpec(store_id, kind, description, MappingProxyType(options))


def _convert(where: str, name: str, typ: type, value: Any) -> Any:
    if typ is str and not isinstance(value, str | int | float):
        raise StoreConfigError(f"{where}: option {name!r}: {value!r} is not a valid str")
    try:
        return convert(typ, value)
    except (TypeError, ValueError):
        raise StoreConfigError(f"{where}: option {name!r}: {value!r} is not a valid "
                               f"{typ.__name__}") from None


def _check(where: str, kind: str, o: dict[str, Any]) -> None:
    if kind == "swift":
        if o["token"] and o["storage_url"]:
            pass
        elif not (o["auth_url"] and o["user"] and o["key"]):
            raise StoreConfigError(f"{where}: a swift store needs auth_url, user and key "
                                   "(or storage_url and token)")
        if o["auth_version"] not in (1, 3):
            raise StoreConfigError(f"{where}: auth_version must be 1 (tempauth) or 3 "
                                   "(Keystone)")
        if o["auth_version"] == 3 and not o["project"]:
            raise StoreConfigError(f"{where}: auth_version 3 needs project")
        if o["segment_size"] < 1 * MiB:
            raise StoreConfigError(f"{where}: segment_size must be at least 1 MiB")
    if kind == "s3":
        if o["addressing_style"] not in ("path", "virtual"):
            raise StoreConfigError(f"{where}: addressing_style must be path or virtual")
        if o["part_size"] < 5 * MiB:
            raise StoreConfigError(f"{where}: part_size must be at least 5 MiB (S3's "
                                   "smallest part)")
        if not 1 <= o["parts_in_flight"] <= 64:
            raise StoreConfigError(f"{where}: parts_in_flight must be between 1 and 64")
        if bool(o["access_key"]) != bool(o["secret_key"]):
            raise StoreConfigError(f"{where}: give both access_key and secret_key, or "
                                   "neither (boto3's own credential chain)")

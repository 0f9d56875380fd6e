"""The stores a server keeps image data in, built from ``settings.stores``.

One ``Store`` per ``[stores.<id>]`` table (``streamd.store_config``), by type: a file store
(``path``, or ``data_dir/images``), a Swift store, an S3 store, an HTTP store (read-only:
image locations that are URLs, ``streamd.service.locations``; it fetches only what
web-download may fetch). ``default_store`` is where uploads go unless a request names
another (``X-Image-Meta-Store``), so it may not be a read-only store. ``store_throttle_mib_s``
wraps every store in ``ThrottledStore`` so that tests and demos can watch back-pressure and
bounded memory with a store slower than the network.

Opening a store does not contact it: an object store that is down at start-up leaves the
server running, and only requests that need that store fail (503 naming it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from streamd.config import ConfigError, Settings
from streamd.context import RequestContext
from streamd.errors import BadRequest, Forbidden
from streamd.io import FileStore, Store, StoreError, ThrottledStore
from streamd.io.url_filter import UrlFilter
from streamd.store_config import StoreSpec
from streamd.units import MiB

log = logging.getLogger(__name__)

F = TypeVar("F", bound=UrlFilter)


@dataclass
class StoreSet:
    """The configured stores by id, in the order of the settings, and the default one."""

    stores: dict[str, Store]
    specs: dict[str, StoreSpec]
    default_id: str

    @property
    def default(self) -> Store:
        return self.stores[self.default_id]

    @property
    def ids(self) -> list[str]:
        return list(self.stores)

    def __iter__(self) -> Iterator[Store]:
        return iter(self.stores.values())

    def __len__(self) -> int:
        return len(self.stores)

    def get(self, store_id: str) -> Store:
        """The store named ``store_id``; 400 naming the known ones if there is none."""
        try:
            return self.stores[store_id]
        except KeyError:
            raise BadRequest(f"Store {store_id!r} is not known to this cloud; the stores "
                             f"are: {', '.join(self.stores)}") from None

    def holding(self, store_id: str) -> Store:
        """The store an image's data was recorded in; 503 if this server has no such store
        (it was removed from the settings, or a node is configured differently)."""
        try:
            return self.stores[store_id]
        except KeyError:
            raise StoreError(f"the image's data is in store {store_id!r}, which this server "
                             "is not configured with") from None

    def ids_of_type(self, kind: str) -> list[str]:
        """The ids of the stores of type ``kind`` (e.g. "http"), in the settings' order."""
        return [store_id for store_id, spec in self.specs.items() if spec.type == kind]

    def choose(self, store_id: str | None) -> Store:
        """The store a request names, or the default store."""
        return self.default if store_id is None else self.get(store_id)

    async def aclose(self) -> None:
        for store in self.stores.values():
            with trio.CancelScope(shield=True):
                try:
                    await store.aclose()
                except Exception:
                    log.exception("store %s did not close cleanly", store.name)


def describe(store_set: StoreSet, *, detail: bool, ctx: RequestContext | None = None
             ) -> list[dict[str, Any]]:
    """``/v2/info/stores`` as Glance answers it: id, description, ``"default": "true"`` (a
    string, as Glance writes it) on one; with ``detail`` (admins only, 403 otherwise) also
    the type, the options without secrets (``properties``) and ``weight``."""
    if detail and (ctx is None or not ctx.is_admin):
        raise Forbidden("You are not authorized to complete stores_info_detail action.")
    answer = []
    for store_id, store in store_set.stores.items():
        spec = store_set.specs[store_id]
        entry: dict[str, Any] = {"id": store_id, "description": spec.description}
        if store_id == store_set.default_id:
            entry["default"] = "true"
        if store.capabilities.read_only:
            entry["read-only"] = "true"
        if detail:
            entry["type"] = spec.type
            entry["properties"] = spec.public_options()
            entry["weight"] = 0
        answer.append(entry)
    return answer


async def open_stores(
    settings: Settings, limiter: trio.CapacityLimiter, *, reap: bool = True
) -> StoreSet:
    """Build every configured store and (``reap``) remove what a crash left in file stores.

    Reap before serving, in one process: every temp file in a file store's directory then
    belongs to an upload that can no longer finish (one data dir per server; see
    ``FileStore.reap_temp_files``). A worker started later must not: it would remove the
    temp files of uploads running in the others.
    """
    stores: dict[str, Store] = {}
    try:
        for spec in settings.stores:
            store = await _open(settings, spec, limiter, reap=reap)
            if settings.store_throttle_mib_s:
                rate = settings.store_throttle_mib_s * MiB
                log.warning("store %s throttled to %.1f MiB/s (store_throttle_mib_s: for "
                            "tests only)", spec.id, settings.store_throttle_mib_s)
                store = ThrottledStore(store, delay=0.0, bytes_per_second=rate)
            stores[spec.id] = store
        if stores[settings.default_store_id].capabilities.read_only:
            raise ConfigError(f"setting 'default_store': store {settings.default_store_id!r} "
                              "is read-only, and uploads go to the default store: name a "
                              "file, swift or s3 store")
    except BaseException:
        await StoreSet(stores, {}, "").aclose()
        raise
    return StoreSet(stores, {spec.id: spec for spec in settings.stores},
                    settings.default_store_id)


async def _open(
    settings: Settings, spec: StoreSpec, limiter: trio.CapacityLimiter, *, reap: bool
) -> Store:
    o = spec.options
    if spec.type == "file":
        path = o["path"] or settings.images_dir
        store = await trio.to_thread.run_sync(
            lambda: FileStore(path, limiter=limiter, read_chunk=settings.read_chunk_size,
                              name=spec.id))
        reaped = await store.reap_temp_files(older_than=0) if reap else 0
        if reaped:
            log.warning("store %s: removed %d temp file(s) of uploads interrupted by a crash",
                        spec.id, reaped)
        return store
    if spec.type == "swift":
        from streamd.io.stores.swift import SwiftCredentials, SwiftStore

        credentials = SwiftCredentials(
            auth_url=o["auth_url"], user=o["user"], key=o["key"],
            auth_version=o["auth_version"], project=o["project"],
            user_domain=o["user_domain"], project_domain=o["project_domain"],
            region=o["region"], storage_url=o["storage_url"], token=o["token"])
        return SwiftStore(spec.id, credentials, container=o["container"],
                          segment_size=o["segment_size"],
                          create_container=o["create_container"], limiter=limiter)
    if spec.type == "s3":
        from streamd.io.stores.s3 import S3Settings, S3Store

        s3 = S3Settings(bucket=o["bucket"], endpoint_url=o["endpoint"],
                        access_key=o["access_key"], secret_key=o["secret_key"],
                        region=o["region"], addressing_style=o["addressing_style"],
                        prefix=o["prefix"], create_bucket=o["create_bucket"],
                        verify_tls=o["verify_tls"])
        return await trio.to_thread.run_sync(
            lambda: S3Store(spec.id, s3, part_size=o["part_size"],
                            parts_in_flight=o["parts_in_flight"],
                            read_chunk=settings.read_chunk_size, limiter=limiter))
    if spec.type == "http":
        from streamd.io.stores.http import HttpStore

        return HttpStore(spec.id, url_filter=url_filter(settings),
                         max_redirects=settings.web_download_max_redirects)
    raise AssertionError(f"store type {spec.type!r} has no module")  # store_config checks


def url_filter(settings: Settings, kind: type[F] = UrlFilter) -> F:  # type: ignore[assignment]
    """What an HTTP store and web-download may fetch (``web_download_*``): both fetch URLs
    that users hand the server. ``kind`` is the filter class (web-download's names itself
    in its refusals)."""
    return kind(
        allowed_schemes=settings.web_download_allowed_schemes,
        allowed_hosts=settings.web_download_allowed_hosts,
        disallowed_hosts=settings.web_download_disallowed_hosts,
        allowed_ports=settings.web_download_allowed_ports,
        private_hosts=settings.web_download_private_hosts,
    )

"""One settings object for the whole server.

Settings come from built-in defaults, then an optional TOML file (``--config`` or
``STREAMD_CONFIG``), then ``STREAMD_<NAME>`` environment variables, then command-line flags.
Every value is checked once, here, so that a bad setting stops start-up with a message that
names it instead of failing later in the middle of a transfer.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import socket
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamd.setting_values import convert
from streamd.store_config import DEFAULT_FILE_STORE, StoreConfigError, StoreSpec, parse_stores
from streamd.units import GiB, KiB, MiB, TiB

HASH_ALGOS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "xxh3_128", "xxh3_64")
AUTH_MODES = ("noauth", "tokens", "keystone")
IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")
HTTP_SERVERS = ("anycorn", "hypercorn")


class ConfigError(Exception):
    """A setting is missing, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class Settings:
    bind: str = "127.0.0.1:9292"
    data_dir: Path = Path("streamd-data")
    # None: the embedded SQLite database under data_dir
    database_url: str | None = None
    # run pending migrations at start-up; default only for the embedded SQLite database
    auto_migrate: bool | None = None
    # who is asking (streamd.auth): noauth trusts identity headers, tokens looks
    # X-Auth-Token up in tokens_file, keystone validates it with Keystone v3
    auth: str = "noauth"
    # Glance 33's default rules (secure RBAC): a reader reads, a member (or admin) creates,
    # changes, uploads, shares and answers offers; false: the legacy rules (any role writes)
    enforce_secure_rbac: bool = True
    # noauth on a non-loopback bind lets any client act as any project (and as admin): it is
    # refused unless this says the network is trusted
    noauth_allow_remote: bool = False
    # auth = "tokens": a TOML or JSON file, [tokens.<token>] project_id, user_id, roles
    tokens_file: Path | None = None
    # auth = "keystone": the identity endpoint (the v3 API is below it, e.g.
    # http://keystone:5000) and streamd's own credentials for validating user tokens: a
    # static service token, or a service user's password (a token is fetched and renewed)
    keystone_url: str | None = None
    keystone_service_token: str | None = None
    keystone_service_user: str | None = None
    keystone_service_password: str | None = None
    keystone_service_project: str | None = None
    keystone_service_domain: str = "Default"
    keystone_cache_ttl: float = 300.0  # seconds a validated token is trusted without asking
    keystone_timeout: float = 10.0  # seconds for one request to Keystone
    # per-project quotas (Glance's unified limits); None: unlimited
    quota_image_count: int | None = None  # images a project may own
    quota_image_size_total: int | None = None  # bytes of image data a project may store
    quota_image_stage_total: int | None = None  # bytes a project may have staged for import
    image_member_quota: int = 128  # members per image, as Glance's image_member_quota
    # Glance's per-image limits (same names, same defaults): custom properties, tags and
    # locations (copies in stores) one image may have; past them the answer is 413
    image_property_quota: int = 128
    image_tag_quota: int = 128
    image_location_quota: int = 10
    # bytes (UTF-8) of one custom property value: Glance stores values in a TEXT column,
    # which holds 65,535 bytes on MySQL; past it, 413
    image_property_value_max: int = 65535
    # bytes of one metadata request body (JSON, never image data); past it, 413 and the
    # connection is closed. Glance sets none: 128 properties at the value limit fit
    metadata_body_max: int = 16 * 1024 * 1024
    # custom property names only admins may set, change or remove; a trailing * matches a
    # prefix (e.g. "x_billing_*")
    protected_properties: tuple[str, ...] = ()
    # data plane
    chunk_size: int = 1 * MiB  # one hash/write call per MiB keeps thread hops cheap
    queue_depth: int = 4  # chunks in flight per transfer: memory = chunk_size * queue_depth
    # bytes per read (and per send) of a download: the response's buffer, and hypercorn's
    # copy of it, are each this big while it is sent
    read_chunk_size: int = 512 * KiB
    # chunks shared by all transfers beyond each one's first (streamd.io.BufferBudget):
    # transfer memory is at most chunk_size * (transfers + shared_buffers)
    # 4, not 8: one upload still gets its whole queue_depth (4), and 8 at once, CPU-bound by
    # then, ran no slower on 4 (peak RSS 112 -> 109 MiB, 8 x 512 MiB uploads)
    shared_buffers: int = 4
    image_size_cap: int = 1 * TiB  # Glance's default image_size_cap
    os_hash_algo: str = "sha512"  # Glance's default hashing_algorithm
    max_transfers: int = 64  # concurrent uploads + downloads; past it 503 + Retry-After
    # an upload whose client sends nothing for this long is abandoned (408); the image is
    # queued again. Waits caused by a slow store (back-pressure) do not count.
    upload_idle_timeout: float = 60.0
    io_threads: int = 16  # worker threads for store I/O and hashing, shared by all transfers
    # for tests and demos only: slow the image store to this many MiB/s (0: full speed)
    store_throttle_mib_s: float = 0.0
    # image import (streamd.service.imports): the methods offered; copy-image only counts
    # once more than one store is configured
    enabled_import_methods: tuple[str, ...] = IMPORT_METHODS
    # web-download's URI filters, as Glance's [import_filtering_opts] (an empty list allows
    # any); beyond them, a host that resolves to a loopback, private, link-local or other
    # non-global address is refused unless listed in web_download_private_hosts ("*": any)
    web_download_allowed_schemes: tuple[str, ...] = ("http", "https")
    web_download_allowed_hosts: tuple[str, ...] = ()
    web_download_disallowed_hosts: tuple[str, ...] = ()
    web_download_allowed_ports: tuple[int, ...] = (80, 443)
    web_download_private_hosts: tuple[str, ...] = ()
    web_download_max_redirects: int = 5  # each hop is filtered like the first URI
    # image locations (streamd.service.locations), as Glance's option of that name: the
    # location PATCH ops (add/replace/remove /locations) and the images' ``locations`` field
    # only when true; POST /v2/images/{id}/locations needs no setting, only an http store
    show_multiple_locations: bool = False
    # disk-format inspection of uploaded data (streamd.service.disk_formats), as Glance's
    # [image_format]: the vmdk createType subformats accepted (Glance's default; never more
    # than oslo's inspector accepts, which refuses any other), and whether data that does
    # not match its disk_format is refused (unsafe data is refused either way)
    vmdk_allowed_types: tuple[str, ...] = ("streamOptimized", "monolithicSparse")
    require_image_format_match: bool = True
    # BENCH ONLY (Glance has no such switch): false skips inspection entirely, so unsafe
    # images are accepted and virtual_size is not set; it exists to measure its cost
    inspect_image_data: bool = True
    # staged data (PUT /v2/images/{id}/stage) not imported this many seconds after its last
    # byte arrived is removed and its image queued again
    stage_max_age: float = 86400.0
    # streamd's transfer extensions next to the Image API: staging in parts at any offset
    # (Upload-Part), GET /v2/images/{id}/extents, GET /v2/info/streamd; false: the plain
    # Image API only, as Glance (clients fall back to one stream)
    transfer_extensions: bool = True
    # registry
    db_threads: int = 8  # worker threads that may run registry calls at once
    # listing
    limit_param_default: int = 25
    api_limit_max: int = 1000
    # where image data is kept (streamd.store_config): [stores.<id>] tables, and the store
    # that uploads go to unless a request names another; no tables: one file store
    stores: tuple[StoreSpec, ...] = (DEFAULT_FILE_STORE,)
    default_store: str | None = None  # None: the only store (required with several)
    # several API nodes on one registry (streamd.service.leases): who this node is in the
    # leases it holds (None: this host's name and a digest of data_dir, the same after a
    # restart, so that a restarted node takes its own work back at once); how long a lease
    # lasts without renewal (renewed every third of it: a crashed node's upload is repaired
    # this long after its last renewal); the URL other nodes reach this one at, recorded on
    # the images it stages (os_glance_stage_host) so that their imports are sent here (None:
    # http:// and bind, this host's name for a wildcard address); seconds between repair
    # passes, which put back the work whose lease has run out
    node_id: str | None = None
    lease_ttl: float = 60.0
    worker_self_reference_url: str | None = None
    repair_interval: float = 60.0
    # the local read-through cache (streamd.service.cache), on when some store is cached
    # (every swift, s3 and http store; a file store with cached = true): where its files
    # are (None: data_dir/cache), the bytes it may hold (a hard limit: Glance's
    # image_cache_max_size default), how long a fill may make no progress before the
    # cleaner cancels it (Glance's image_cache_stall_time), the seconds between passes of
    # the cleaner, the pruner and the prefetcher (queued images, at most
    # cache_prefetch_concurrency fills at once), whether a ranged read of an image not
    # cached yet starts a fill of the whole image, and how many ranged reads of
    # cache_fill_piece bytes a fill runs at once (streamd.io.striped: one store GET is not
    # the most a store gives)
    cache_dir: Path | None = None
    cache_max_size: int = 10 * GiB
    cache_stall_time: float = 86400.0
    cache_clean_interval: float = 600.0
    cache_prune_interval: float = 600.0
    cache_prefetch_interval: float = 300.0
    cache_prefetch_concurrency: int = 2
    cache_fill_on_range: bool = True
    cache_fill_streams: int = 1  # >1 stripes a fill: see streamd.io.striped for when
    cache_fill_piece: int = 64 * MiB
    # server
    # the ASGI server: "hypercorn", or "anycorn" (a hypercorn fork on AnyIO; metadata requests
    # cost 25..40 % more there; bench/results/README.md has the table)
    http_server: str = "hypercorn"
    # send downloads of local files (file store, complete cache entries) with os.sendfile on
    # plaintext HTTP/1.1 connections (streamd/hypercorn_h11.py); false: always through
    # Python, as over TLS and HTTP/2
    zero_copy: bool = True
    # bytes handed to one os.sendfile window of a zero-copy download; the next window's
    # read-ahead is started while this one goes out (page-cached bytes: up to 8 windows at
    # once, streamd.http.data.CACHED_WINDOWS)
    sendfile_window: int = 8 * MiB
    # native TLS: certificate chain and key (PEM) of the API; with tls_ca_certs, clients
    # must present a certificate signed by one of those CAs. ALPN offers HTTP/1.1 only:
    # hypercorn's HTTP/2 moved bulk bodies 5-10x slower here. Over TLS downloads are
    # streamed through Python (os.sendfile would send plaintext)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_ca_certs: Path | None = None
    workers: int = 1
    keep_alive_timeout: float = 75.0
    # a request's headers must be complete this many seconds after their first byte, or the
    # connection gets a 408 and is closed (a client dribbling headers holds no connection)
    header_timeout: float = 20.0
    # on SIGTERM, requests in flight get this long to finish before they are cancelled
    graceful_timeout: float = 10.0
    # quart-trio cuts metadata responses after this long; data routes never go through it
    response_timeout: float = 60.0
    # GET /metrics (streamd.http.metrics): None serves it on bind with the API (and its
    # authentication), "off" nowhere, "HOST:PORT" only on that address, without
    # authentication (the first process's figures when workers > 1)
    metrics_bind: str | None = None

    @property
    def host(self) -> str:
        return self.bind.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rsplit(":", 1)[1])

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.sqlite').resolve()}"

    @property
    def uses_embedded_db(self) -> bool:
        return self.database_url is None or self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.uses_embedded_db if self.auto_migrate is None else self.auto_migrate

    @functools.cached_property
    def node(self) -> str:
        """``node_id``, or one derived from this host and ``data_dir`` (see ``node_id``)."""
        if self.node_id:
            return self.node_id
        where = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return f"{socket.gethostname()}-{where}"

    @property
    def self_url(self) -> str:
        """``worker_self_reference_url`` without a trailing slash, or one made from ``bind``."""
        if self.worker_self_reference_url:
            return self.worker_self_reference_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` when the API serves TLS."""
        return "https" if self.tls_certfile else "http"

    @property
    def default_store_id(self) -> str:
        return self.default_store or self.stores[0].id

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def image_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"


# each setting's type, resolved from its annotation: ``int | None``, ``tuple[str, ...]``, …
_TYPES = typing.get_type_hints(Settings)


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or environment value into the type of setting ``name``."""
    kind = _TYPES[name]
    try:
        return convert(kind, value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: {value!r} is not a valid {_type_name(kind)}"
                          ) from None


def _type_name(kind: Any) -> str:
    """How a setting's type is written in its annotation: ``int | None``, ``Path``, …"""
    if isinstance(kind, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(kind))
    if typing.get_origin(kind) is not None:
        return str(kind)
    return "None" if kind is type(None) else kind.__name__


def _check(s: Settings) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"setting {name!r}: {why}")

    host, sep, port = s.bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise bad("bind", f"{s.bind!r} is not HOST:PORT")
    if not 0 < s.header_timeout <= 3600:
        raise bad("header_timeout", "must be more than 0 and at most 3600 seconds")
    if (s.tls_certfile is None) != (s.tls_keyfile is None):
        raise bad("tls_certfile" if s.tls_certfile is None else "tls_keyfile",
                  "TLS needs both tls_certfile and tls_keyfile")
    if s.tls_ca_certs is not None and s.tls_certfile is None:
        raise bad("tls_ca_certs", "client certificates need TLS: set tls_certfile and "
                  "tls_keyfile too")
    for name in ("tls_certfile", "tls_keyfile", "tls_ca_certs"):
        path = getattr(s, name)
        if path is not None and not os.access(path, os.R_OK):
            raise bad(name, f"{str(path)!r} is not a readable file")
    if s.os_hash_algo not in HASH_ALGOS:
        raise bad("os_hash_algo", f"{s.os_hash_algo!r} is not one of {', '.join(HASH_ALGOS)}")
    if s.auth not in AUTH_MODES:
        raise bad("auth", f"{s.auth!r} is not one of {', '.join(AUTH_MODES)}")
    if s.auth == "noauth" and not s.noauth_allow_remote and not is_loopback(s.host):
        raise bad("noauth_allow_remote", (
            f"auth = \"noauth\" trusts the X-Project-Id/X-Roles headers of every request, "
            f"so it serves only loopback addresses, and bind is {s.bind!r}. Bind 127.0.0.1, "
            "use auth = \"tokens\" or \"keystone\", or set noauth_allow_remote = true "
            "(STREAMD_NOAUTH_ALLOW_REMOTE=true) if every client that can reach it is trusted"
        ))
    if s.auth == "tokens" and s.tokens_file is None:
        raise bad("tokens_file", "auth = \"tokens\" needs the path of the tokens file")
    if s.auth == "keystone":
        if not s.keystone_url or not s.keystone_url.startswith(("http://", "https://")):
            raise bad("keystone_url", "auth = \"keystone\" needs Keystone's URL, e.g. "
                      "http://keystone:5000")
        password = (s.keystone_service_user, s.keystone_service_password,
                    s.keystone_service_project)
        if not s.keystone_service_token and not all(password):
            raise bad("keystone_service_token", (
                "auth = \"keystone\" needs streamd's own credentials to validate tokens: "
                "keystone_service_token, or keystone_service_user, keystone_service_password "
                "and keystone_service_project"))
    for name in ("quota_image_count", "quota_image_size_total", "quota_image_stage_total",
                 "image_member_quota", "image_property_quota", "image_tag_quota",
                 "image_location_quota", "image_property_value_max"):
        value = getattr(s, name)
        if value is not None and value < 0:
            raise bad(name, "must not be negative (leave a quota unset for no limit)")
    for pattern in s.protected_properties:
        if "*" in pattern.rstrip("*") or pattern == "*":
            raise bad("protected_properties", f"{pattern!r}: use a name or a prefix that "
                      "ends in *, e.g. x_billing_*")
    for method in s.enabled_import_methods:
        if method not in IMPORT_METHODS:
            raise bad("enabled_import_methods", f"{method!r} is not one of "
                      f"{', '.join(IMPORT_METHODS)}")
    for port in s.web_download_allowed_ports:
        if not 0 < port < 65536:
            raise bad("web_download_allowed_ports", f"{port} is not a TCP port")
    if s.stage_max_age <= 0:
        raise bad("stage_max_age", "must be positive")
    if s.web_download_max_redirects < 0:
        raise bad("web_download_max_redirects", "must not be negative")
    if not 4096 <= s.chunk_size <= 64 * MiB:
        raise bad("chunk_size", "must be between 4096 and 67108864 bytes")
    if not 4096 <= s.read_chunk_size <= 64 * MiB:
        raise bad("read_chunk_size", "must be between 4096 and 67108864 bytes")
    if s.http_server not in HTTP_SERVERS:
        raise bad("http_server", f"{s.http_server!r} is not one of {', '.join(HTTP_SERVERS)}")
    if not 64 * KiB <= s.sendfile_window <= 1 * GiB:
        raise bad("sendfile_window", "must be between 65536 and 1073741824 bytes")
    if not 1 <= s.queue_depth <= 64:
        raise bad("queue_depth", "must be between 1 and 64")
    if not 0 <= s.shared_buffers <= 4096:
        raise bad("shared_buffers", "must be between 0 and 4096")
    if s.image_size_cap < 0:
        raise bad("image_size_cap", "must not be negative")
    for name in ("max_transfers", "io_threads", "db_threads", "workers", "limit_param_default",
                 "api_limit_max", "metadata_body_max"):
        if getattr(s, name) < 1:
            raise bad(name, "must be at least 1")
    for name in ("store_throttle_mib_s", "graceful_timeout", "keystone_cache_ttl"):
        if getattr(s, name) < 0:
            raise bad(name, "must not be negative")
    for name in ("response_timeout", "upload_idle_timeout", "keystone_timeout"):
        if getattr(s, name) <= 0:
            raise bad(name, "must be positive")
    if s.lease_ttl < 1:
        raise bad("lease_ttl", "must be at least 1 second (leases expire on whole seconds)")
    if s.repair_interval <= 0:
        raise bad("repair_interval", "must be positive")
    if s.cache_max_size < 0:
        raise bad("cache_max_size", "must not be negative")
    for name in ("cache_stall_time", "cache_clean_interval", "cache_prune_interval",
                 "cache_prefetch_interval"):
        if getattr(s, name) <= 0:
            raise bad(name, "must be positive")
    if not 1 <= s.cache_prefetch_concurrency <= 64:
        raise bad("cache_prefetch_concurrency", "must be between 1 and 64")
    if not 1 <= s.cache_fill_streams <= 16:
        raise bad("cache_fill_streams", "must be between 1 and 16")
    if not 1 * MiB <= s.cache_fill_piece <= 4 * GiB:
        raise bad("cache_fill_piece", "must be between 1048576 and 4294967296 bytes")
    if s.node_id is not None and not (0 < len(s.node_id) <= 255 and s.node_id.isprintable()):
        raise bad("node_id", "must be 1 to 255 printable characters (or unset: host name and "
                  "a digest of data_dir)")
    if s.worker_self_reference_url is not None:
        ref = urllib.parse.urlsplit(s.worker_self_reference_url)
        if ref.scheme not in ("http", "https") or not ref.hostname or ref.query or ref.fragment:
            raise bad("worker_self_reference_url", f"{s.worker_self_reference_url!r} is not an "
                      "http(s) URL of this node, e.g. http://node-a.example:9292")
    if s.limit_param_default > s.api_limit_max:
        raise bad("limit_param_default", "must not exceed api_limit_max")
    ids = [spec.id for spec in s.stores]
    if s.default_store is None and len(ids) > 1:
        raise bad("default_store", f"several stores are configured ({', '.join(ids)}): name "
                  "the one uploads go to")
    if s.default_store is not None and s.default_store not in ids:
        raise bad("default_store", f"{s.default_store!r} is not a configured store "
                  f"({', '.join(ids)})")
    if s.metrics_bind not in (None, "off"):
        host, sep, port = s.metrics_bind.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise bad("metrics_bind", f"{s.metrics_bind!r} is not off or HOST:PORT")
        if s.metrics_bind == s.bind:
            raise bad("metrics_bind", "is bind: leave it unset to serve /metrics there")
    url = s.database_url
    if url is not None and not url.startswith(("sqlite", "postgresql", "mysql", "mariadb")):
        raise bad("database_url", f"{url!r}: use sqlite://, postgresql+psycopg:// or mysql+pymysql://")


def is_loopback(host: str) -> bool:
    """Is ``host`` (a bind address) reachable only from this machine?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, file, environment and flags, in that order."""
    return load_settings_traced(path, env, overrides)[0]


def load_settings_traced(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """``load_settings``, and where each value that is not a default came from: ``file``
    (with its path), ``env`` (with the variable) or ``flag`` (``streamd config show``)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = path or env.get("STREAMD_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
        tables = doc.pop("stores", None)
        for key, value in doc.items():
            if key not in _TYPES:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value)
            sources[key] = f"file {path}"
    else:
        tables = None
    try:
        values["stores"] = parse_stores(tables, env)
    except StoreConfigError as e:
        raise ConfigError(str(e)) from None
    from_env = sorted(k for k in env if k.startswith("STREAMD_STORES__"))
    if tables or from_env:
        sources["stores"] = ", ".join([*([f"file {path}"] if tables else []),
                                       *(f"env {k}" for k in from_env)])
    for key, value in env.items():
        if (not key.startswith("STREAMD_") or key in ("STREAMD_CONFIG", "STREAMD_VENV")
                or key.startswith("STREAMD_STORES__")):
            continue
        name = key[len("STREAMD_"):].lower()
        if name not in _TYPES:
            raise ConfigError(f"environment variable {key}: unknown setting {name!r}")
        values[name] = _coerce(name, value)
        sources[name] = f"env {key}"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value)
            sources[key] = "flag --" + key.replace("_", "-")
    settings = Settings(**values)
    _check(settings)
    return settings, sources

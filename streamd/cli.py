"""The ``streamd`` command: parses the command line and calls the server, the registry or
the service layer (wiring only); what users read is in ``DESCRIPTION`` and the help lines."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import Any

from streamd.config import ConfigError, Settings, load_settings
from streamd.errors import StreamdError
from streamd.request_ids import RequestIdLogFilter


def _overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings a command's flags give (None: not given)."""
    return {name: getattr(args, name, None) for name in ("bind", "data_dir", "database_url")}


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, overrides=_overrides(args))


def _serve(args: argparse.Namespace) -> int:
    import signal

    import trio

    from streamd.malloc_arenas import limit_arenas
    from streamd.server import WorkerDied, serve
    from streamd.startup import claim_data_dir, listening_socket

    limit_arenas()  # before any thread: see streamd.malloc_arenas
    settings = _settings(args)
    # a file store past RLIMIT_FSIZE must see EFBIG, not die of SIGXFSZ
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if args.worker:
        trio.run(functools.partial(serve, settings, primary=False, listen_fd=args.listen_fd))
        return 0
    with claim_data_dir(settings.data_dir) as lock_fd, \
            listening_socket(settings.bind) as sock:
        # a worker is this same command (so the same settings) with --worker, serving on the
        # primary's socket; -P: from the installed package, whatever the working directory
        # holds (python -m would put it first on sys.path)
        worker_command = [sys.executable, "-P", "-m", "streamd", *args.argv, "--worker",
                          "--listen-fd", str(sock.fileno())]
        try:
            trio.run(functools.partial(
                _serve_and_announce, serve, settings, worker_command=worker_command,
                listen_fd=sock.fileno(), pass_fds=(sock.fileno(), lock_fd)))
        except BaseExceptionGroup as group:
            error = _only_error(group)
            if isinstance(error, WorkerDied):
                logging.getLogger("streamd").error("%s", error)
                return 1
            raise
    return 0


async def _serve_and_announce(serve: Any, settings: Settings, **kwargs: Any) -> None:
    """Run ``serve``; say "serving on" once it is true (the socket accepts, the registry
    answered, start-up repair is done), not before."""
    import trio

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(functools.partial(serve, settings, **kwargs))
        logging.getLogger("streamd").info(
            "streamd serving on %s (data in %s, registry %s, %d worker process%s)",
            ", ".join(urls), settings.data_dir, settings.registry_url.split("@")[-1],
            settings.workers, "" if settings.workers == 1 else "es",
        )


def _db_upgrade(args: argparse.Namespace) -> int:
    from streamd.registry import make_engine, upgrade

    settings = _settings(args)
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url)
    upgrade(engine)
    print(f"registry schema upgraded: {settings.registry_url.split('@')[-1]}")
    return 0


def _metadefs(args: argparse.Namespace) -> int:
    """``streamd metadefs load|export|unload``: namespace files in Glance's format."""
    from pathlib import Path

    from streamd.registry import ensure_current, make_engine
    from streamd.registry.metadefs import MetadefRegistry
    from streamd.service import metadefs_files

    settings = _settings(args)
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url)
    try:
        ensure_current(engine, migrate=settings.should_auto_migrate)
        registry = MetadefRegistry(engine)
        if args.metadefs_command == "load":
            report = metadefs_files.load(registry, Path(args.directory), replace=args.replace)
            for name in report.loaded:
                print(f"loaded {name}")
            for name in report.skipped:
                print(f"skipped {name}: it exists (--replace loads it anew)")
        elif args.metadefs_command == "export":
            for path in metadefs_files.export(registry, Path(args.directory),
                                              args.namespace or None):
                print(f"exported {path}")
        else:
            for name in metadefs_files.unload(registry, args.namespace or None):
                print(f"unloaded {name}")
    finally:
        engine.dispose()
    return 0


def _cache(args: argparse.Namespace) -> int:
    """``streamd cache list|queue|delete|clear|prune|clean``: this node's read-through cache,
    through the node's own API (the running server owns the cache), as an admin: with
    ``auth = noauth`` by the identity headers, else with ``--token`` (or ``OS_AUTH_TOKEN``)."""
    import datetime as dt
    import os

    import httpx

    settings = _settings(args)
    url = (args.url or settings.self_url).rstrip("/")
    token = args.token or os.environ.get("OS_AUTH_TOKEN")
    headers = ({"X-Auth-Token": token} if token else
               {"X-Project-Id": "admin", "X-User-Id": "streamd-cli", "X-Roles": "admin"})
    target = {"clear": args.target if args.cache_command == "clear" else None}
    calls = {
        "list": [("GET", "/v2/cache", {})],
        "queue": [("PUT", f"/v2/cache/{i}", {}) for i in getattr(args, "image_id", [])],
        "delete": [("DELETE", f"/v2/cache/{i}", {}) for i in getattr(args, "image_id", [])],
        "clear": [("DELETE", "/v2/cache",
                   {"x-image-cache-clear-target": target["clear"]} if target["clear"] else {})],
        "prune": [("POST", "/v2/cache/prune", {})],
        "clean": [("POST", "/v2/cache/clean", {})],
    }[args.cache_command]
    with httpx.Client(timeout=60) as client:
        for method, path, extra in calls:
            try:
                r = client.request(method, url + path, headers={**headers, **extra})
            except httpx.HTTPError as exc:
                print(f"streamd: the node at {url} does not answer ({exc})", file=sys.stderr)
                return 1
            if r.status_code >= 400:
                try:
                    message = r.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = r.text
                print(f"streamd: {method} {path}: {r.status_code} {message}", file=sys.stderr)
                return 1
            if args.cache_command == "list":
                body = r.json()
                print(f"{'IMAGE':36}  {'SIZE':>14}  {'HITS':>6}  LAST ACCESSED")
                for e in body["cached_images"]:
                    when = dt.datetime.fromtimestamp(e["last_accessed"], dt.UTC)
                    print(f"{e['image_id']:36}  {e['size']:>14}  {e['hits']:>6}  "
                          f"{when:%Y-%m-%d %H:%M:%S}")
                for image_id in body["queued_images"]:
                    print(f"{image_id:36}  {'queued':>14}")
            elif args.cache_command == "prune":
                body = r.json()
                print(f"pruned {body['total_files_pruned']} file(s), "
                      f"{body['total_bytes_pruned']} bytes")
            else:
                print(f"{args.cache_command}: {path.rsplit('/', 1)[-1]} done")
    return 0


DESCRIPTION = """\
streamd: an OpenStack Image API v2 server (the API of Glance) for python-glanceclient,
openstacksdk, the openstack CLI, Nova and Cinder, with a streaming data plane."""

SETTINGS_EPILOG = """\
Settings come from defaults, then the TOML file of --config (or $STREAMD_CONFIG), then
STREAMD_<NAME> environment variables (e.g. STREAMD_BIND=0.0.0.0:9292,
STREAMD_AUTH=tokens; a store's options: STREAMD_STORES__<ID>__<OPTION>), then these
flags. `streamd config show` prints every setting and where its value came from; the
README's Configuration section explains each one."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("streamd")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _config_show(args: argparse.Namespace) -> int:
    """``streamd config show``: every setting's effective value and where it came from."""
    from streamd.config import load_settings_traced
    from streamd.settings_report import describe_settings

    settings, sources = load_settings_traced(args.config, overrides=_overrides(args))
    for line in describe_settings(settings, sources):
        print(line)
    return 0


def _add_registry_options(command: argparse.ArgumentParser) -> None:
    """--config, --data-dir and --database-url: where the settings and the registry are."""
    command.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                         metavar="FILE", help="TOML settings file (also $STREAMD_CONFIG)")
    command.add_argument("--data-dir", metavar="DIR",
                         help="images, staging and the SQLite registry (default ./streamd-data;"
                              " STREAMD_DATA_DIR)")
    command.add_argument("--database-url", metavar="URL",
                         help="the registry: postgresql+psycopg://…, mysql+pymysql://… "
                              "(default: SQLite under the data dir; STREAMD_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd", description=DESCRIPTION,
        epilog="`streamd COMMAND --help` tells more. " + SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamd {_version()}")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML settings file (also $STREAMD_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the Image API v2 server",
        description="Serve the OpenStack Image API v2 on --bind (default "
                    "http://127.0.0.1:9292): SQLite and files under --data-dir unless the "
                    "settings say otherwise.",
        epilog=SETTINGS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--bind", metavar="HOST:PORT",
                       help="where to listen (default 127.0.0.1:9292; STREAMD_BIND)")
    _add_registry_options(serve)
    # started by the primary process when workers > 1: serve without start-up repair
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # the primary's socket
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="the registry database: schema migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = db_sub.add_parser(
        "upgrade", help="apply pending schema migrations",
        description="Bring the registry's schema up to date (PostgreSQL and MySQL need this "
                    "before the first start and after an upgrade; SQLite migrates itself).")
    _add_registry_options(up)
    up.set_defaults(func=_db_upgrade)

    config = sub.add_parser("config", help="the effective settings")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    show = config_sub.add_parser(
        "show", help="print every setting, its value and where it came from",
        description="Print each setting's effective value (secrets masked) and its source: "
                    "default, file, env (the variable) or flag.",
        epilog=SETTINGS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--bind", metavar="HOST:PORT", help="as for serve")
    _add_registry_options(show)
    show.set_defaults(func=_config_show)

    md = sub.add_parser("metadefs", help="metadata definitions: load, export, unload "
                                         "namespace files (Glance's etc/metadefs format)")
    md_sub = md.add_subparsers(dest="metadefs_command", required=True, metavar="COMMAND")
    load = md_sub.add_parser("load", help="load every *.json namespace file of DIRECTORY")
    load.add_argument("directory", help="a directory of namespace files, or one file")
    load.add_argument("--replace", action="store_true",
                      help="load namespaces that exist anew (default: skip them)")
    export = md_sub.add_parser("export", help="write each namespace to DIRECTORY/<name>.json")
    export.add_argument("directory", help="where to write the files (created if missing)")
    export.add_argument("--namespace", action="append", help="only this one (repeatable)")
    unload = md_sub.add_parser("unload", help="delete namespaces (default: all, and the "
                                              "resource types)")
    unload.add_argument("--namespace", action="append", help="only this one (repeatable)")
    for command in (load, export, unload):
        _add_registry_options(command)
        command.set_defaults(func=_metadefs)

    cache = sub.add_parser("cache", help="this node's read-through cache (through its API)")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    commands = [cache_sub.add_parser("list", help="cached and queued images")]
    for name, what in (("queue", "queue images for the prefetcher (cached at once)"),
                       ("delete", "drop images from the cache")):
        command = cache_sub.add_parser(name, help=what)
        command.add_argument("image_id", nargs="+", help="an image's id")
        commands.append(command)
    clear = cache_sub.add_parser("clear", help="drop every entry and/or the queue")
    clear.add_argument("--target", choices=("cache", "queue"), help="only this (default: both)")
    commands += [clear,
                 cache_sub.add_parser("prune", help="evict down to cache_max_size"),
                 cache_sub.add_parser("clean", help="remove stalled fills and stray files")]
    for command in commands:
        command.add_argument("--url", help="the node's URL (default: worker_self_reference_url "
                                           "or one made from bind)")
        command.add_argument("--token", help="an admin's token (auth = tokens or keystone; "
                                             "also OS_AUTH_TOKEN)")
        command.add_argument("--config", dest="config", default=argparse.SUPPRESS,
                             metavar="FILE", help="TOML settings file (also $STREAMD_CONFIG)")
        command.set_defaults(func=_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    # the pid tells the processes apart when workers > 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s "
                        "%(name)s [%(request_id)s] %(message)s")
    for handler in logging.getLogger().handlers:  # the request a line was logged for, or -
        handler.addFilter(RequestIdLogFilter())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (ConfigError, StreamdError) as e:
        print(f"streamd: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # raised inside the server's nursery
        error = _only_error(group)
        if not isinstance(error, (ConfigError, StreamdError)):
            raise
        print(f"streamd: {error}", file=sys.stderr)
        return 2


def _only_error(error: BaseException) -> BaseException:
    """The single exception that trio's (nested) exception groups wrap, if there is one."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error

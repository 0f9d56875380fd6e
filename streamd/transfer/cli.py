"""``streamd-transfer``: the command line of the transfer client.

Exit codes say what failed, for scripts: 0 done; 1 ``compare`` found differences; 2 bad
usage; 3 the server refused (an HTTP error, its message printed); 4 verification failed
(the bytes do not have the recorded digests); 5 the network failed (a re-run resumes);
6 the image is not in a state to transfer or its import failed; 7 a local file error;
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from streamd.transfer.api import ApiError, ImageAPI
from streamd.transfer.download import VERIFY_MODES, NotDownloadable, download
from streamd.transfer.localfile import VerificationFailed, verify
from streamd.transfer.pacing import Pace
from streamd.transfer.replicate import SAME, compare, replicate
from streamd.transfer.report import Reporter
from streamd.transfer.upload import ImportFailed, upload

EXIT_DIFFERENT, EXIT_SERVER, EXIT_VERIFY, EXIT_NETWORK, EXIT_STATE, EXIT_LOCAL = 1, 3, 4, 5, 6, 7
DEFAULT_URL = "http://127.0.0.1:9292"


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep:
            raise SystemExit(f"streamd-transfer: --header {value!r} is not NAME:VALUE")
        headers[name.strip()] = content.strip()
    return headers


def _api(url: str, token: str | None, headers: list[str], connections: int) -> ImageAPI:
    return ImageAPI(url, token=token, headers=_headers(headers), connections=connections)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamd-transfer",
        description="Move images to and from an Image API server (streamd or Glance): several "
                    "connections, zero runs skipped, resumable, verified.",
        epilog="Exit codes: 0 done, 1 compare found differences, 2 usage, 3 the server "
               "refused, 4 verification failed, 5 network failure (re-run to resume), 6 image "
               "state or import failed, 7 local file error.")
    p.add_argument("--url", default=os.environ.get("OS_IMAGE_URL", DEFAULT_URL),
                   help="the Image API endpoint (env OS_IMAGE_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("OS_AUTH_TOKEN"),
                   help="a Keystone or streamd token, sent as X-Auth-Token (env OS_AUTH_TOKEN)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                   help="one more request header (e.g. X-Project-Id:p1 for a noauth server)")
    p.add_argument("-c", "--connections", type=int, default=4,
                   help="connections per image (default %(default)s; 1 without extensions)")
    p.add_argument("--max-rate", type=float, metavar="MIB_S",
                   help="download no faster than this many MiB/s in all (a shared link)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    mode.add_argument("--json", action="store_true",
                      help="one JSON object per event and the statistics on stdout")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="an image into a file (sparse, resumable, verified)")
    d.add_argument("image_id")
    d.add_argument("file", type=Path)
    d.add_argument("--verify", choices=VERIFY_MODES, default="auto",
                   help="what the file is checked against at the end: auto (default) the "
                        "xxh3-128 a streamd server recorded, else as digest; digest the "
                        "image's os_hash_value (else its md5 checksum), as glanceclient "
                        "checks; none nothing")
    d.add_argument("--no-verify", dest="verify", action="store_const", const="none",
                   help="the same as --verify none")

    u = sub.add_parser("upload", help="a file into a new image, or resume one (--image-id)")
    u.add_argument("file", type=Path)
    u.add_argument("--image-id", help="upload into (or resume) this image instead of "
                   "creating one")
    u.add_argument("--name", help="the new image's name (default: the file's name)")
    u.add_argument("--disk-format", default="raw")
    u.add_argument("--container-format", default="bare")
    u.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="one more property of the new image")
    u.add_argument("--verify", choices=VERIFY_MODES, default="auto",
                   help="what the image is checked against once active: auto (default) the "
                        "file's xxh3-128 against a streamd server's, else as digest; digest "
                        "the file's md5 and sha512 against checksum and os_hash_value; none "
                        "nothing")

    v = sub.add_parser("verify", help="check a file against an image's recorded digests")
    v.add_argument("image_id")
    v.add_argument("file", type=Path)

    for name, text in (("replicate", "copy images (metadata, tags, data) from SRC to DST"),
                       ("compare", "say which images of SRC are missing or differ on DST")):
        r = sub.add_parser(name, help=text)
        r.add_argument("src", help="the source's Image API endpoint")
        r.add_argument("dst", help="the target's Image API endpoint")
        r.add_argument("--src-token", help="X-Auth-Token for SRC (default: --token)")
        r.add_argument("--dst-token", help="X-Auth-Token for DST (default: --token)")
        r.add_argument("--image", action="append", default=[], metavar="IMAGE_ID",
                       help="only this image (repeatable)")
        if name == "replicate":
            r.add_argument("--dry-run", action="store_true",
                           help="say what would be copied, copy nothing")
            r.add_argument("--images-at-once", type=int, default=2, metavar="N",
                           help="images copied at the same time, each over -c connections "
                                "(default %(default)s)")
    return p


async def _run(args: argparse.Namespace, reporter: Reporter) -> int:
    conns = max(1, args.connections)
    if args.command in ("replicate", "compare"):
        src = _api(args.src, args.src_token or args.token, args.header, conns)
        dst = _api(args.dst, args.dst_token or args.token, args.header, conns)
        try:
            if args.command == "compare":
                rows = [c for c in await compare(src, dst)
                        if not args.image or c.image_id in args.image]
                for row in rows:
                    reporter.event(row.state, image_id=row.image_id, name=row.name,
                                   size=row.size)
                return EXIT_DIFFERENT if any(r.state != SAME for r in rows) else 0
            for stats in await replicate(src, dst, reporter, dry_run=args.dry_run,
                                         connections=conns, only=set(args.image) or None,
                                         images_at_once=args.images_at_once):
                reporter.stats(stats)
            return 0
        finally:
            await src.aclose()
            await dst.aclose()
    api = _api(args.url, args.token, args.header, conns)
    try:
        if args.command == "download":
            pace = Pace(args.max_rate * 1024 * 1024 if args.max_rate else None)
            stats = await download(api, args.image_id, args.file, reporter, connections=conns,
                                   verify=args.verify, pace=pace)
        elif args.command == "upload":
            fields: dict[str, Any] = {"name": args.name or args.file.name,
                                      "disk_format": args.disk_format,
                                      "container_format": args.container_format}
            for prop in args.property:
                key, _, value = prop.partition("=")
                fields[key] = value
            stats = await upload(api, args.file, reporter, image_id=args.image_id,
                                 fields=fields, connections=conns, verify=args.verify)
        else:
            image = await api.image(args.image_id)
            checked = await trio.to_thread.run_sync(verify, args.file, image)
            reporter.event("verified", image_id=args.image_id, file=str(args.file),
                           digests=checked)
            return 0
        reporter.stats(stats)
        return 0
    finally:
        await api.aclose()


FAILURES: list[tuple[type[BaseException], int]] = [
    (VerificationFailed, EXIT_VERIFY), (ApiError, EXIT_SERVER),
    (httpx.TransportError, EXIT_NETWORK), (NotDownloadable, EXIT_STATE),
    (ImportFailed, EXIT_STATE), (OSError, EXIT_LOCAL),
]


def _exit_code(exc: BaseException) -> tuple[int, BaseException] | None:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _exit_code(inner)
            if found is not None:
                return found
        return None
    for kind, code in FAILURES:
        if isinstance(exc, kind):
            return code, exc
    return None


def main(argv: list[str] | None = None, run: Callable[..., Awaitable[int]] = _run) -> int:
    args = parser().parse_args(argv)
    reporter = Reporter("json" if args.json else "quiet" if args.quiet else "progress")
    try:
        return trio.run(run, args, reporter)
    except KeyboardInterrupt:
        reporter.error("interrupted; run the same command again to resume")
        return 130
    except BaseException as exc:
        found = _exit_code(exc)
        if found is None:
            raise
        code, cause = found
        reporter.error(f"{cause}" or type(cause).__name__, exit_code=code)
        return code


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: parse the command line, run a session (bench.harness)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.harness import SKIPPABLE, Options, run

UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
         "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3}
QUICK_SIZE = "64MiB"
FULL_SIZE = "1GiB"


def parse_size(text: str) -> int:
    """``"1GiB"``, ``"512M"``, ``"64mib"``, ``"1048576"`` → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: not a size like 1GiB, 256MiB or 4096")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_concurrency(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a list like 1,8") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: levels must be at least 1")
    return levels


def parse_skip(text: str) -> set[str]:
    names = {x.strip() for x in text.split(",") if x.strip()}
    unknown = names - set(SKIPPABLE)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"cannot skip {', '.join(sorted(unknown))}; choose from {', '.join(SKIPPABLE)}")
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and memory harness for streamd (and Glance, side by side).",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run in well under a minute: {QUICK_SIZE}, 1 run, 200 images, "
                        "no paging set, no Glance unless --glance-url")
    p.add_argument("--size", type=parse_size, default=None,
                   help=f"bytes per transfer (default {FULL_SIZE}; --quick: {QUICK_SIZE})")
    p.add_argument("--runs", type=int, default=None,
                   help="runs per figure; figures are median (min–max) (default 3; --quick: 1)")
    p.add_argument("--concurrency", type=parse_concurrency, default=[1, 8],
                   help="concurrent streams, comma separated (default 1,8); 1 uses curl")
    p.add_argument("--glance-url", default=None,
                   help="also measure this Glance (e.g. http://127.0.0.1:9393), interleaved")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="where the JSON and PNG go (default bench/results)")
    p.add_argument("--skip", type=parse_skip, action="append", default=[],
                   help=f"comma-separated parts to leave out: {', '.join(SKIPPABLE)}")
    p.add_argument("--images", type=int, default=None,
                   help="images created/shown/listed/deleted per run (default 1000; quick 200)")
    p.add_argument("--page-images", type=int, default=None,
                   help="images to page through at limit 1000, 0 to skip "
                        "(default 10000; quick 0)")
    p.add_argument("--range-seconds", type=float, default=None,
                   help="seconds of ranged reads per concurrency level (default 5; quick 1.5)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs `-m streamd serve` (default: this one)")
    p.add_argument("--tmp-dir", type=Path, default=None,
                   help="where inputs and streamd's data dirs go (default: the system temp dir)")
    p.add_argument("--swift", action="store_true",
                   help="also the Swift group: the project's Swift, its own ceiling, streamd "
                        "with a swift store and with an s3 store (s3api), a second Glance 33 "
                        "with a swift store (see bench/README.md)")
    p.add_argument("--swift-only", action="store_true",
                   help="the Swift group alone: --swift, no file-store targets, static server, "
                        "stages or --glance-url")
    p.add_argument("--swift-size", type=parse_size, default=None,
                   help="bytes per Swift-group transfer (default: --size)")
    p.add_argument("--swift-segment", type=parse_size, default=parse_size("200MiB"),
                   help="segment_size of streamd's swift store (default 200MiB)")
    p.add_argument("--glance-swift-port", type=int, default=None,
                   help="port of the Glance on Swift (default: a free port)")
    p.add_argument("--glance-swift-workers", type=int, default=2,
                   help="uWSGI processes (1 thread each) of the Glance on Swift: requests it "
                        "serves at once (default 2, as the peer)")
    p.add_argument("--swift-uncached", action="store_true",
                   help="also streamd-swift-uncached: streamd's swift store with cached = false "
                        "(every download straight from Swift)")
    p.add_argument("--transfer", action="store_true",
                   help="also the transfer group: streamd-transfer against glanceclient and "
                        "curl on a 10 GiB sparse image, 1/2/4 connections on a dense 2 GiB "
                        "one, replication of 50 images from --glance-url (bench/transfergroup.py)")
    p.add_argument("--transfer-only", action="store_true",
                   help="the transfer group alone: --transfer, no file-store targets, static "
                        "server or stages; --glance-url only as the replication source")
    args = p.parse_args(argv)
    quick = args.quick
    skip = set().union(*args.skip)
    if args.swift_only:
        # stages stay: their write and write.again tell what fresh memory costs in each run
        skip |= {"streamd", "static", "zero", "qcow2"}
        args.glance_url = None
    if args.transfer_only:
        skip |= {"streamd", "static", "stages", "zero", "qcow2", "glance"}
    size = args.size if args.size is not None else parse_size(QUICK_SIZE if quick else FULL_SIZE)
    opts = Options(
        size=size,
        runs=args.runs or (1 if quick else 3),
        concurrency=args.concurrency,
        out=args.out,
        glance_url=args.glance_url,
        skip=skip,
        quick=quick,
        meta_images=args.images if args.images is not None else (200 if quick else 1000),
        page_images=args.page_images if args.page_images is not None else (
            0 if quick else 10_000),
        range_seconds=args.range_seconds or (1.5 if quick else 5.0),
        stage_bytes=(64 if quick else 256) * 1024 * 1024,
        python=args.python,
        tmp_dir=args.tmp_dir,
        swift=args.swift or args.swift_only,
        swift_size=args.swift_size,
        swift_segment=args.swift_segment,
        glance_swift_port=args.glance_swift_port,
        swift_uncached=args.swift_uncached,
        glance_swift_workers=args.glance_swift_workers,
        transfer=args.transfer or args.transfer_only,
    )
    if opts.runs < 1:
        p.error("--runs must be at least 1")
    if opts.glance_swift_workers < 1:
        p.error("--glance-swift-workers must be at least 1")
    run(opts, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

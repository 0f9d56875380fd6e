"""One benchmark session: start the servers, make the inputs, run everything N times, report.

Runs are interleaved so that slow drift on a shared machine (another job, page cache, disk
write-back) lands on every target alike: per run, stages → static server → streamd →
streamd with xxh3 → streamd with 2 worker processes → Glance → (with ``--swift``) Swift's
ceiling → streamd on Swift → streamd on S3 (s3api) → Glance on Swift, then the next run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import ceiling, report, stages
from bench.figures import Figures
from bench.goals import STAGES
from bench.inputs import Input, make_inputs, make_random
from bench.machine import describe, page_reporting
from bench.swiftgroup import SEGMENT_SIZE, SwiftGroup, limit_notes
from bench.targets import StreamdServer, Target, glance_target, http_status
from bench.transfergroup import GiB, TransferGroup
from bench.workloads import Plan, TargetRun, cleanup_paged_images

MiB = 1024 * 1024

SKIPPABLE = ("streamd", "xxh3", "workers", "anycorn", "stream", "tls", "glance", "zero", "qcow2",
             "range", "metadata", "page10k", "stages", "static", "clients", "chart", "s3", "cache")


@dataclass
class Options:
    size: int  # bytes per transfer
    runs: int
    concurrency: list[int]
    out: Path
    glance_url: str | None = None
    skip: set[str] = field(default_factory=set)
    quick: bool = False
    meta_images: int = 1000
    page_images: int = 10_000
    range_seconds: float = 5.0
    stage_bytes: int = 256 * MiB
    python: str = sys.executable  # the interpreter that runs ``-m streamd``
    tmp_dir: Path | None = None  # parent of the session's temp dir (inputs, data dirs)
    swift: bool = False  # the Swift group (bench/swiftgroup.py)
    swift_size: int | None = None  # bytes per Swift-group transfer; None: ``size``
    swift_segment: int = SEGMENT_SIZE  # streamd's swift store segment_size
    glance_swift_port: int | None = None  # Glance on Swift; None: a free port
    swift_uncached: bool = False  # also streamd-swift-uncached (its swift store cached = false)
    glance_swift_workers: int = 2  # uWSGI processes of the Glance on Swift (the peer's 2)
    transfer: bool = False  # the transfer client's group (bench/transfergroup.py)


def _stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _start_swift_group(opts: Options, tmp: Path, session: str, random_input: Input,
                       notes: list[str]) -> SwiftGroup | None:
    """Swift and its servers; None (with a note) when Swift cannot start here."""
    size = opts.swift_size or opts.size
    inp = random_input if size == random_input.size else make_random(
        tmp / "inputs" / "swift-random.raw", size)
    group = SwiftGroup(tmp=tmp, session=session, python=opts.python, size=size,
                       segment_size=opts.swift_segment, glance_port=opts.glance_swift_port,
                       skip=opts.skip, concurrency=opts.concurrency, notes=notes,
                       uncached=opts.swift_uncached, glance_workers=opts.glance_swift_workers)
    return group if _started("Swift", lambda: group.start(inp), group.stop, notes) else None


def _start_transfer_group(opts: Options, tmp: Path, notes: list[str]) -> TransferGroup | None:
    """streamd-transfer's server and inputs; None (with a note) when they cannot start."""
    scale = 1 / 8 if opts.quick else 1.0  # --quick: 1.25 GiB virtual, 128 MiB of data
    group = TransferGroup(tmp=tmp, python=opts.python, glance_url=opts.glance_url,
                          virtual=int(10 * GiB * scale), data=int(GiB * scale),
                          dense=int(2 * GiB * scale), images=8 if opts.quick else 50,
                          notes=notes)
    return group if _started("transfer", group.start, group.stop, notes) else None


def _started(name: str, start: Callable[[], None], stop: Callable[[], None],
             notes: list[str]) -> bool:
    """Start a group; when it cannot (Swift not installed, a port taken, a client missing,
    the disk full, …) stop what it started and say why in the notes: the rest still runs."""
    try:
        start()
    except Exception as e:
        stop()
        notes.append(f"the {name} group did not run: {e}".splitlines()[0])
        print(f"bench: the {name} group did not run:\n{e}", flush=True)
        return False
    return True


def _reported_during(machine: dict[str, Any]) -> None:
    """MiB the guest handed back to its host during the run (free page reporting): memory
    the run's new allocations then paid host faults for."""
    before, after = machine.get("page_reporting"), page_reporting()
    with contextlib.suppress(KeyError, TypeError, ValueError):
        machine["page_reporting_mib_during_run"] = (
            int(after["reported_kib"]) - int(before["reported_kib"])) // 1024


def run(opts: Options, argv: list[str]) -> Path:
    """Run a whole session; write JSON and PNG under ``opts.out``; return the JSON path."""
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.monotonic()
    session = f"bench-{secrets.token_hex(3)}"
    # at the start: the code the servers run, the file system their data dirs are on
    machine = describe(opts.tmp_dir or Path(tempfile.gettempdir()))
    tmp = Path(tempfile.mkdtemp(prefix="streamd-bench-", dir=opts.tmp_dir))
    figures = Figures()
    notes: list[str] = []
    servers: list[StreamdServer] = []
    targets: list[Target] = []
    swift_group: SwiftGroup | None = None
    transfer_group: TransferGroup | None = None
    try:
        print(f"bench: inputs of {opts.size / MiB:.0f} MiB in {tmp}", flush=True)
        inputs = make_inputs(tmp / "inputs", opts.size, {"zero", "qcow2"} - opts.skip)
        if "qcow2" not in opts.skip and "qcow2" not in inputs:
            notes.append("qemu-img not installed: no qcow2 input")
        plan = Plan(
            inputs=inputs, concurrency=opts.concurrency, range_seconds=opts.range_seconds,
            meta_images=opts.meta_images, page_images=opts.page_images, skip=opts.skip,
            compare_clients="clients" not in opts.skip,
        )
        variants = []
        if "streamd" not in opts.skip:
            variants.append(StreamdServer("streamd", tmp / "streamd-data", python=opts.python))
            if "xxh3" not in opts.skip:
                variants.append(StreamdServer(
                    "streamd-xxh3", tmp / "streamd-xxh3-data",
                    env={"STREAMD_OS_HASH_ALGO": "xxh3_128"}, python=opts.python,
                    uploads_only=True))
            if "anycorn" not in opts.skip:
                # the same streamd on the other ASGI server (streamd.server), whole bench
                variants.append(StreamdServer(
                    "streamd-anycorn", tmp / "streamd-anycorn-data",
                    env={"STREAMD_HTTP_SERVER": "anycorn"}, python=opts.python))
            if "stream" not in opts.skip:
                # downloads through Python instead of os.sendfile (zero_copy = false)
                variants.append(StreamdServer(
                    "streamd-stream", tmp / "streamd-stream-data",
                    env={"STREAMD_ZERO_COPY": "false"}, python=opts.python,
                    transfers_only=True, ranges=True))
            if "tls" not in opts.skip:
                # the same transfers over native TLS (trustme CA; clients verify)
                variants.append(StreamdServer(
                    "streamd-tls", tmp / "streamd-tls-data", python=opts.python,
                    transfers_only=True, tls=True))
            if "workers" not in opts.skip:
                variants.append(StreamdServer(
                    "streamd-2w", tmp / "streamd-2w-data", env={"STREAMD_WORKERS": "2"},
                    python=opts.python, transfers_only=True))
        for server in variants:
            try:
                server.start()
            except RuntimeError as e:
                notes.append(f"{server.name} did not start: {e}".splitlines()[0])
                print(f"bench: {server.name} did not start:\n{e}", flush=True)
                continue
            servers.append(server)
            targets.append(server.target())
            print(f"bench: {server.name} up at {server.url} (pid {server.pid()})", flush=True)
        if opts.glance_url and "glance" not in opts.skip:
            code = http_status(opts.glance_url.rstrip("/") + "/")
            if code in (200, 300):
                g = glance_target(opts.glance_url)
                notes += g.notes
                targets.append(g)
            else:
                notes.append(f"Glance at {opts.glance_url} not answering (GET / -> {code})")
        if opts.swift:
            swift_group = _start_swift_group(opts, tmp, session, inputs["random"], notes)
        if opts.transfer:
            transfer_group = _start_transfer_group(opts, tmp, notes)
        chunks = None
        if "stages" not in opts.skip:
            chunks = stages.load_chunks(inputs["random"].path, min(opts.stage_bytes, opts.size))
        for run_no in range(1, opts.runs + 1):
            print(f"bench: run {run_no}/{opts.runs}", flush=True)
            if chunks is not None:
                figs, stage_notes = stages.measure(chunks, tmp)
                for name, value in figs.items():
                    figures.add(STAGES, name, "MiB/s", value)
                for n in stage_notes:
                    if n not in notes:
                        notes.append(n)
                print("  stages done", flush=True)
            if "static" not in opts.skip:
                ceiling.measure(inputs["random"], opts.concurrency, figures)
                print("  static server done", flush=True)
            for target in targets:
                t0 = time.monotonic()
                TargetRun(target, plan, figures, session, run_no, notes).run()
                print(f"  {target.name} done in {time.monotonic() - t0:.0f} s", flush=True)
            if swift_group is not None:
                swift_group.run(run_no, figures)
            if transfer_group is not None:
                t0 = time.monotonic()
                transfer_group.run(run_no, figures)
                print(f"  transfer group done in {time.monotonic() - t0:.0f} s", flush=True)
        if swift_group is not None:
            notes += limit_notes(figures, os.cpu_count() or 1)
    finally:
        for target in targets:
            if opts.page_images and "page10k" not in opts.skip and "metadata" not in opts.skip:
                try:
                    n = cleanup_paged_images(target, session)
                    if n:
                        print(f"bench: deleted {n} paging images on {target.name}", flush=True)
                except Exception as e:  # cleanup must not hide the run's own error
                    notes.append(f"cleanup on {target.name} failed: {e}")
        for server in servers:
            server.stop()
        if swift_group is not None:
            swift_group.stop()
        if transfer_group is not None:
            transfer_group.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    _reported_during(machine)
    meta = {
        "schema": 1,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(time.monotonic() - t_start, 1),
        "command": "python -m bench " + shlex.join(argv),
        "session": session,
        "options": {**{k: v for k, v in asdict(opts).items()
                       if k not in ("out", "skip", "tmp_dir", "python")},
                    "size_mib": opts.size / MiB, "skip": sorted(opts.skip)},
        "machine": machine,
        "targets": {t.name: t.url for t in targets},
    }
    if swift_group is not None:
        meta["targets"].update({t.name: t.url for t in swift_group.targets})
        if swift_group.swift is not None:
            meta["targets"]["swift"] = swift_group.swift.endpoint
    if transfer_group is not None and transfer_group.server is not None:
        meta["targets"]["streamd-transfer-server"] = transfer_group.server.url
    doc = report.build(meta, figures, notes)
    stem = f"bench-{_stamp()}{'-quick' if opts.quick else ''}"
    json_path = opts.out / f"{stem}.json"
    report.write_json(doc, json_path)
    if "chart" not in opts.skip:
        report.chart(figures, opts.out / f"{stem}.png",
                     f"streamd bench {meta['started']} — {opts.size / MiB:.0f} MiB, "
                     f"{opts.runs} run(s)")
    print(report.markdown(doc, figures))
    print(f"bench: wrote {json_path}" + ("" if "chart" in opts.skip else
                                         f" and {json_path.with_suffix('.png')}"), flush=True)
    return json_path

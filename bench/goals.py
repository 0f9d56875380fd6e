"""Ratios between figures, and the issue's goals judged on them.

A ratio is ``median(numerator) / median(denominator)`` of two figures, named
``<target>:<figure>``. A goal is a ratio (or one figure) with a threshold; it passes, fails,
or is ``n/a`` when a figure it needs was not measured in this run (Glance not asked for,
concurrency 8 not run, …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.figures import Figures

STREAMD = "streamd"
XXH3 = "streamd-xxh3"
WORKERS = "streamd-2w"  # streamd with workers = 2: the data path on both cores
ANYCORN = "streamd-anycorn"  # streamd on anycorn instead of hypercorn
STREAM = "streamd-stream"  # streamd with zero_copy = false: downloads copied through Python
TLS = "streamd-tls"  # streamd serving https (native TLS), transfers only
GLANCE = "glance"
STATIC = "static"
STAGES = "stages"
# the Swift group (--swift, bench/swiftgroup.py): all on one Swift
SWIFT = "swift"  # Swift's own ceiling: curl straight to Swift
STREAMD_SWIFT = "streamd-swift"  # default_store a swift store
STREAMD_S3 = "streamd-s3"  # default_store an s3 store on Swift's s3api
GLANCE_SWIFT = "glance-swift"  # a second Glance 33 with glance_store's swift driver, its cache on
STREAMD_SWIFT_UNCACHED = "streamd-swift-uncached"  # the swift store with cached = false
SWIFT_TARGETS = (SWIFT, STREAMD_SWIFT, STREAMD_SWIFT_UNCACHED, STREAMD_S3, GLANCE_SWIFT)
SWIFT_RATIO_PREFIXES = (f"{STREAMD_SWIFT}/", f"{STREAMD_SWIFT_UNCACHED}/", f"{STREAMD_S3}/")
CACHE_TARGETS = (STREAMD_SWIFT, GLANCE_SWIFT)  # the read-through cache's workloads (P1.4)
# the transfer group (--transfer, bench/transfergroup.py): clients, not servers
TRANSFER = "streamd-transfer"
GLANCECLIENT = "glanceclient"
CURL = "curl"
TRANSFER_TARGETS = (TRANSFER, GLANCECLIENT, CURL)


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str  # "target:figure"
    denominator: str

    def value(self, figures: Figures) -> float | None:
        num = figures.median(*self.numerator.split(":", 1))
        den = figures.median(*self.denominator.split(":", 1))
        if num is None or den is None or den == 0:
            return None
        return num / den

    def to_json(self, figures: Figures) -> dict[str, Any]:
        v = self.value(figures)
        return {"name": self.name, "numerator": self.numerator,
                "denominator": self.denominator, "value": None if v is None else round(v, 4)}


def ratios(figures: Figures) -> list[Ratio]:
    """Every ratio the report shows, for the figures that were measured."""
    out: list[Ratio] = []
    sd = figures.by_target.get(STREAMD, {})
    for peer, label in ((GLANCE, "streamd/glance"), (STATIC, "streamd/static")):
        for name in figures.by_target.get(peer, {}):
            if name in sd and not name.endswith((".client_cpu", ".loadclient")):
                out.append(Ratio(f"{label} {name}", f"{STREAMD}:{name}", f"{peer}:{name}"))
    for name in figures.by_target.get(ANYCORN, {}):
        if name in sd and not name.endswith((".client_cpu", ".loadclient", ".status")):
            out.append(Ratio(f"anycorn/hypercorn {name}", f"{ANYCORN}:{name}",
                             f"{STREAMD}:{name}"))
    for peer, label in ((GLANCE, "streamd-anycorn/glance"), (STATIC, "streamd-anycorn/static")):
        for name in figures.by_target.get(peer, {}):
            if name in figures.by_target.get(ANYCORN, {}) and not name.endswith(
                    (".client_cpu", ".loadclient")):
                out.append(Ratio(f"{label} {name}", f"{ANYCORN}:{name}", f"{peer}:{name}"))
    for name in figures.by_target.get(STREAM, {}):
        if name in sd and name.startswith(("download.", "range.")) and not name.endswith(
                (".client_cpu", ".loadclient")):
            out.append(Ratio(f"sendfile/stream {name}", f"{STREAMD}:{name}", f"{STREAM}:{name}"))
    for name in figures.by_target.get(TLS, {}):
        if name in sd and not name.endswith((".client_cpu", ".loadclient")):
            out.append(Ratio(f"tls/plain {name}", f"{TLS}:{name}", f"{STREAMD}:{name}"))
    workers = figures.by_target.get(WORKERS, {})
    for peer, label in ((GLANCE, "streamd-2w/glance"), (STATIC, "streamd-2w/static")):
        for name in figures.by_target.get(peer, {}):
            if name in workers and not name.endswith((".client_cpu", ".loadclient")):
                out.append(Ratio(f"{label} {name}", f"{WORKERS}:{name}", f"{peer}:{name}"))
    for name in figures.by_target.get(XXH3, {}):
        if name in sd and not name.endswith((".client_cpu", ".server_rss")):
            out.append(Ratio(f"xxh3/sha512 {name}", f"{XXH3}:{name}", f"{STREAMD}:{name}"))
    stage_refs = [
        ("upload.random.c1", "md5+sha512.2threads", "upload / md5+sha512 in 2 threads"),
        ("upload.random.c1", "md5+sha512.1thread", "upload / md5+sha512 in 1 thread"),
        ("upload.random.c1", "write+fsync", "upload / disk write+fsync"),
        ("upload.random.c1", "receive", "upload / loopback receive"),
        ("download.random.c1", "read.cached", "download / page-cache read"),
        ("download.random.c1", "read.cold", "download / disk read"),
    ]
    for target in (STREAMD, XXH3, GLANCE):
        for fig, stage, label in stage_refs:
            if figures.get(target, fig) and figures.get(STAGES, stage):
                out.append(Ratio(f"{target}: {label}", f"{target}:{fig}", f"{STAGES}:{stage}"))
    for target in (STREAMD, STATIC):
        for fig in ("upload.random.c1", "download.random.c1"):
            if figures.get(target, f"{fig}.loadclient") and figures.get(target, fig):
                out.append(Ratio(f"load client/curl {target} {fig}",
                                 f"{target}:{fig}.loadclient", f"{target}:{fig}"))
    out += swift_ratios(figures)
    return out


def swift_ratios(figures: Figures) -> list[Ratio]:
    """streamd on Swift (swift and s3 stores) over Glance on Swift, and over Swift's own rate;
    the cache's hits over the static server's, its first download over the uncached store's."""
    out: list[Ratio] = []
    for mine in (STREAMD_SWIFT, STREAMD_SWIFT_UNCACHED, STREAMD_S3):
        figs = figures.by_target.get(mine, {})
        for name in figures.by_target.get(GLANCE_SWIFT, {}):
            if name in figs and not name.endswith((".client_cpu", ".status")):
                out.append(Ratio(f"{mine}/{GLANCE_SWIFT} {name}", f"{mine}:{name}",
                                 f"{GLANCE_SWIFT}:{name}"))
        for name, fig in figures.by_target.get(SWIFT, {}).items():
            if name in figs and fig.unit == "MiB/s":
                out.append(Ratio(f"{mine}/{SWIFT} {name}", f"{mine}:{name}", f"{SWIFT}:{name}"))
    figs = figures.by_target.get(STREAMD_SWIFT, {})
    for name in figures.by_target.get(STATIC, {}):
        if name.startswith("hit.") and name in figs:
            out.append(Ratio(f"{STREAMD_SWIFT}/{STATIC} {name}", f"{STREAMD_SWIFT}:{name}",
                             f"{STATIC}:{name}"))
    if figures.get(STREAMD_SWIFT_UNCACHED, "download.random.c1") and \
            figures.get(STREAMD_SWIFT, "download.random.c1"):
        out.append(Ratio(f"{STREAMD_SWIFT}/{STREAMD_SWIFT_UNCACHED} download.random.c1",
                         f"{STREAMD_SWIFT}:download.random.c1",
                         f"{STREAMD_SWIFT_UNCACHED}:download.random.c1"))
    return out


@dataclass(frozen=True)
class Goal:
    text: str
    op: str  # ">=", "<=" or "==" (every sample must equal the threshold)
    threshold: float
    numerator: str  # "target:figure"
    denominator: str | None = None  # None: the numerator's own value is judged
    worst_of: tuple[str, ...] = ()  # more numerators: the worst one is judged

    def judge(self, figures: Figures) -> dict[str, Any]:
        values = []
        for num in (self.numerator, *self.worst_of):
            fig = figures.get(*num.split(":", 1))
            if fig is None or not fig.samples:
                continue
            if self.op == "==":
                values += fig.samples
                continue
            # a ceiling on a resource is judged on its worst sample, a ratio on medians
            v = fig.max if self.denominator is None else fig.median
            if self.denominator is not None:
                den = figures.median(*self.denominator.split(":", 1))
                if not den:
                    continue
                v /= den
            values.append(v)
        if not values:
            return {"goal": self.text, "value": None, "threshold": self.threshold,
                    "op": self.op, "result": "n/a"}
        if self.op == "==":
            v = next((x for x in values if x != self.threshold), self.threshold)
            ok = v == self.threshold
        else:
            v = min(values) if self.op == ">=" else max(values)
            ok = v >= self.threshold if self.op == ">=" else v <= self.threshold
        return {"goal": self.text, "value": round(v, 4), "threshold": self.threshold,
                "op": self.op, "result": "pass" if ok else "FAIL"}


GOALS = [
    Goal("peak streamd RSS during 8 concurrent transfers <= 100 MiB (MiB)", "<=", 100.0,
         f"{STREAMD}:upload.random.c8.server_rss",
         worst_of=(f"{STREAMD}:download.random.c8.server_rss",)),
    Goal("upload, 1 stream >= 1.5x Glance", ">=", 1.5,
         f"{STREAMD}:upload.random.c1", f"{GLANCE}:upload.random.c1"),
    Goal("upload, 8 streams >= 1.3x Glance", ">=", 1.3,
         f"{STREAMD}:upload.random.c8", f"{GLANCE}:upload.random.c8"),
    # P1.3: downloads of images in the page cache (each read once before timing)
    Goal("download, 1 stream >= 1.0x Glance", ">=", 1.0,
         f"{STREAMD}:download.random.c1", f"{GLANCE}:download.random.c1"),
    Goal("download, 8 streams >= 0.9x static-server ceiling", ">=", 0.9,
         f"{STREAMD}:download.random.c8", f"{STATIC}:download.random.c8"),
    Goal("download, 8 streams >= 1.0x Glance", ">=", 1.0,
         f"{STREAMD}:download.random.c8", f"{GLANCE}:download.random.c8"),
    Goal("download, 8 streams: server CPU per GiB <= Glance's", "<=", 1.0,
         f"{STREAMD}:download.random.c8.server_cpu", f"{GLANCE}:download.random.c8.server_cpu"),
    Goal("1 MiB ranges, 8 clients >= 1.5x Glance's request rate", ">=", 1.5,
         f"{STREAMD}:range.random.c8", f"{GLANCE}:range.random.c8"),
    Goal("image create rate >= 5x Glance", ">=", 5.0,
         f"{STREAMD}:meta.create.c8", f"{GLANCE}:meta.create.c8"),
    Goal("list page of 1000 <= 0.5x Glance's time", "<=", 0.5,
         f"{STREAMD}:meta.list.limit1000", f"{GLANCE}:meta.list.limit1000"),
]


# the goals for object stores (P1.2), judged when the Swift group ran
SWIFT_GOALS = [
    Goal("Swift: upload, 1 stream >= 1.5x Glance on the same Swift", ">=", 1.5,
         f"{STREAMD_SWIFT}:upload.random.c1", f"{GLANCE_SWIFT}:upload.random.c1"),
    Goal("Swift: first download (a cache miss on both), 1 stream >= 1.5x Glance on the same "
         "Swift", ">=", 1.5,
         f"{STREAMD_SWIFT}:download.random.c1", f"{GLANCE_SWIFT}:download.random.c1"),
    Goal("Swift: a 1 MiB ranged read answers 206 (Glance: 400)", "==", 206,
         f"{STREAMD_SWIFT}:range.random.c1.status"),
    Goal("Swift: a 1 MiB ranged read < 100 ms (ms, worst run's median)", "<=", 100.0,
         f"{STREAMD_SWIFT}:range.random.c1.latency"),
    Goal("Swift: peak streamd RSS during 8 concurrent uploads <= 150 MiB (MiB)", "<=", 150.0,
         f"{STREAMD_SWIFT}:upload.random.c8.server_rss"),
]


# the read-through cache's goals (P1.4), judged when the Swift group ran its cache workloads
CACHE_GOALS = [
    Goal("Swift cache: 8 clients on one cold image read it from the store once (x image "
         "size, streamd's /metrics)", "==", 1.0,
         f"{STREAMD_SWIFT}:cold.random.c8.store_bytes"),
    Goal("Swift cache: 8 clients on one cold image, wall time >= 3x faster than Glance "
         "(its cache on)", ">=", 3.0,
         f"{STREAMD_SWIFT}:cold.random.c8", f"{GLANCE_SWIFT}:cold.random.c8"),
    Goal("Swift cache: cache hit, 1 stream >= 1.0x Glance's cache hit", ">=", 1.0,
         f"{STREAMD_SWIFT}:hit.random.c1", f"{GLANCE_SWIFT}:hit.random.c1"),
    Goal("Swift cache: cache hit, 8 streams >= 0.6x the static server (one file, 8 clients)",
         ">=", 0.6, f"{STREAMD_SWIFT}:hit.random.c8", f"{STATIC}:hit.random.c8"),
    Goal("Swift cache: first download (miss), 1 stream >= 0.9x Swift's own GET", ">=", 0.9,
         f"{STREAMD_SWIFT}:download.random.c1", f"{SWIFT}:download.random.c1"),
    Goal("Swift cache: 1 MiB ranges of a cached image read 0 bytes from the store "
         "(streamd's /metrics)", "==", 0,
         f"{STREAMD_SWIFT}:hit.range.c1.store_bytes"),
    Goal("Swift cache: 1 MiB ranges of a cached image, 0 GETs in Swift's proxy log", "==", 0,
         f"{STREAMD_SWIFT}:hit.range.c1.swift_gets"),
]


# the transfer client's goals (P2.2), judged when the transfer group ran; seconds, so
# "N x faster" is the other client's time over streamd-transfer's
TRANSFER_GOALS = [
    Goal("transfer: 10 GiB virtual / 1 GiB data, download >= 5x faster than glanceclient",
         ">=", 5.0, f"{GLANCECLIENT}:sparse.download", f"{TRANSFER}:sparse.download"),
    Goal("transfer: the same, its disk use <= 1.1x the data (x data, worst run)", "<=", 1.1,
         f"{TRANSFER}:sparse.download.disk"),
    Goal("transfer: the same, upload >= 5x faster than glanceclient", ">=", 5.0,
         f"{GLANCECLIENT}:sparse.upload", f"{TRANSFER}:sparse.upload"),
    Goal("transfer: 20 ms delayed link, 4 connections >= 2x one (needs netem)", ">=", 2.0,
         f"{TRANSFER}:delayed.download.c4", f"{TRANSFER}:delayed.download.c1"),
    Goal("transfer: replication re-run moves 0 bytes", "==", 0,
         f"{TRANSFER}:replicate.again.moved"),
]


def judge_all(figures: Figures) -> list[dict[str, Any]]:
    """The goals; the Swift group's only when it ran (a Swift-backed target has figures), the
    cache's when its workloads ran (``cold.*`` / ``hit.*`` figures)."""
    goals = list(GOALS)
    if any(t in figures.by_target for t in SWIFT_TARGETS):
        goals += SWIFT_GOALS
    if any(n.startswith(("cold.", "hit.")) for t in CACHE_TARGETS
           for n in figures.by_target.get(t, {})):
        goals += CACHE_GOALS
    if TRANSFER in figures.by_target:
        goals += TRANSFER_GOALS
    return [g.judge(figures) for g in goals]

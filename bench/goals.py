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
GLANCE = "glance"
STATIC = "static"
STAGES = "stages"


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
    return out


@dataclass(frozen=True)
class Goal:
    text: str
    op: str  # ">=" or "<="
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
    Goal("download, 1 stream >= 1.0x Glance", ">=", 1.0,
         f"{STREAMD}:download.random.c1", f"{GLANCE}:download.random.c1"),
    Goal("download, 8 streams >= 0.6x static-server ceiling", ">=", 0.6,
         f"{STREAMD}:download.random.c8", f"{STATIC}:download.random.c8"),
    Goal("image create rate >= 5x Glance", ">=", 5.0,
         f"{STREAMD}:meta.create.c8", f"{GLANCE}:meta.create.c8"),
    Goal("list page of 1000 <= 0.5x Glance's time", "<=", 0.5,
         f"{STREAMD}:meta.list.limit1000", f"{GLANCE}:meta.list.limit1000"),
]


def judge_all(figures: Figures) -> list[dict[str, Any]]:
    return [g.judge(figures) for g in GOALS]

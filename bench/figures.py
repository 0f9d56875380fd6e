"""Figures: one measured quantity per target, kept as every run's sample.

A figure is reported as the median of its samples with min and max, so one noisy run on a
shared machine neither hides nor invents a difference. Figure names read
``<workload>.<input>.c<concurrency>[.<what>]``, e.g. ``upload.random.c8`` (MiB/s) or
``upload.random.c8.server_rss`` (MiB).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    unit: str  # "MiB/s", "req/s", "ms", "s", "MiB", "cpu s/GiB", "x"
    higher_is_better: bool
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "better": "higher" if self.higher_is_better else "lower",
            "median": round(self.median, 4),
            "min": round(self.min, 4),
            "max": round(self.max, 4),
            "samples": [round(s, 4) for s in self.samples],
        }
        if self.note:
            out["note"] = self.note
        return out


# "x image" (bytes read from a store in image sizes), "bytes", "requests" (of the store),
# "x data" (bytes on disk or moved, in sizes of the data a transfer had to move)
LOWER_IS_BETTER_UNITS = {"ms", "s", "MiB", "cpu s/GiB", "x image", "bytes", "requests",
                         "x data"}


class Figures:
    """Figures by target name, then by figure name, in the order they were first recorded."""

    def __init__(self) -> None:
        self.by_target: dict[str, dict[str, Figure]] = {}

    def add(self, target: str, name: str, unit: str, value: float, note: str = "") -> None:
        figs = self.by_target.setdefault(target, {})
        fig = figs.get(name)
        if fig is None:
            fig = figs[name] = Figure(unit, unit not in LOWER_IS_BETTER_UNITS, note=note)
        fig.samples.append(value)

    def get(self, target: str, name: str) -> Figure | None:
        return self.by_target.get(target, {}).get(name)

    def median(self, target: str, name: str) -> float | None:
        fig = self.get(target, name)
        return fig.median if fig is not None and fig.samples else None

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {t: {n: f.to_json() for n, f in figs.items()} for t, figs in self.by_target.items()}

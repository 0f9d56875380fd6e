"""The three outputs of a run: a JSON document, a Markdown summary, a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.figures import Figure, Figures
from bench.goals import (
    CURL,
    GLANCE,
    GLANCE_SWIFT,
    GLANCECLIENT,
    STAGES,
    STATIC,
    STREAMD,
    STREAMD_S3,
    STREAMD_SWIFT,
    STREAMD_SWIFT_UNCACHED,
    SWIFT,
    SWIFT_RATIO_PREFIXES,
    SWIFT_TARGETS,
    TRANSFER,
    TRANSFER_TARGETS,
    WORKERS,
    XXH3,
    judge_all,
    ratios,
    swift_ratios,
)

TARGET_ORDER = [STREAMD, XXH3, WORKERS, GLANCE, STATIC]
COLORS = {STREAMD: "#1f77b4", XXH3: "#17becf", WORKERS: "#2ca02c", GLANCE: "#d62728",
          STATIC: "#7f7f7f", SWIFT: "#8c564b", STREAMD_SWIFT: "#1f77b4", STREAMD_S3: "#9467bd",
          GLANCE_SWIFT: "#d62728"}
COST_SUFFIXES = (".server_rss", ".server_cpu", ".client_cpu", ".machine_cpu", ".server_cpu_ms",
                 ".latency")


def _is_cost(name: str) -> bool:
    """Server/client cost, latency, or (Swift group) what Swift and the machine spent."""
    return (name.endswith((*COST_SUFFIXES, ".swift_proxy_cpu",
                           ".swift_object_cpu")))


def build(meta: dict[str, Any], figures: Figures, notes: list[str]) -> dict[str, Any]:
    """The JSON document: run facts, every figure, every ratio, every goal, notes."""
    return {
        **meta,
        "figures": figures.to_json(),
        "ratios": [r.to_json(figures) for r in ratios(figures)],
        "goals": judge_all(figures),
        "notes": notes,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# -- Markdown ------------------------------------------------------------------------------
def _cell(fig: Figure | None, runs: int) -> str:
    if fig is None or not fig.samples:
        return "–"
    digits = 0 if fig.median >= 100 else 1 if fig.median >= 10 else 2
    text = f"{fig.median:.{digits}f}"
    if len(fig.samples) > 1:
        text += f" ({fig.min:.{digits}f}–{fig.max:.{digits}f})"
    return text


def _ratio(figures: Figures, a: str, b: str, name: str) -> str:
    x, y = figures.median(a, name), figures.median(b, name)
    return f"{x / y:.2f}" if x is not None and y else "–"


def _table(figures: Figures, names: list[str], targets: list[str], runs: int,
           ratio_cols: list[tuple[str, str, str]]) -> list[str]:
    head = ["figure", "unit", *targets, *(label for label, _, _ in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        unit = next(f.unit for t in targets if (f := figures.get(t, name)) is not None)
        row = [name, unit, *(_cell(figures.get(t, name), runs) for t in targets)]
        row += [_ratio(figures, a, b, name) for _, a, b in ratio_cols]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _names(figures: Figures, targets: list[str], keep: Any) -> list[str]:
    seen: dict[str, None] = {}
    for t in targets:
        for name in figures.by_target.get(t, {}):
            if keep(name):
                seen[name] = None
    return list(seen)


def _memory_policy_lines(m: dict[str, Any]) -> list[str]:
    """What the machine does to memory on its own: free page reporting (new memory costs
    host faults) and DAMON schemes (idle pages paged out)."""
    lines = []
    pr = m.get("page_reporting") or {}
    if pr:
        during = m.get("page_reporting_mib_during_run")
        lines.append(f"Free page reporting: order {pr.get('page_reporting_order', '?')}, "
                     f"min_free_ms {pr.get('min_free_ms', '?')}"
                     + (f", {during} MiB handed back to the host during the run"
                        if during is not None else "") + ".  ")
    for d in m.get("damon_schemes") or []:
        lines.append(f"DAMON ({d['operations']}): {d['action']} of memory idle for "
                     f"{d['min_age_s']:.0f} s or more, up to {d['quota_bytes'] // 2**20} MiB per "
                     f"{d['quota_interval_ms']} ms.  ")
    return lines


def markdown(doc: dict[str, Any], figures: Figures) -> str:
    runs = doc["options"]["runs"]
    m = doc["machine"]
    targets = [t for t in TARGET_ORDER if t in figures.by_target]
    ratio_cols = []
    if GLANCE in targets:
        ratio_cols.append(("streamd/glance", STREAMD, GLANCE))
    if STATIC in targets:
        ratio_cols.append(("streamd/static", STREAMD, STATIC))
    out = [
        f"## streamd bench — {doc['started']}",
        "",
        f"`{doc['command']}`  ",
        f"{m['cpu_count']} × {m['cpu_model']}, {m['memory_total_mib']} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}; size {doc['options']['size_mib']:.0f} MiB, "
        f"{runs} run(s): median (min–max).",
        *_memory_policy_lines(m),
        "",
        "### Throughput (MiB/s) and rates",
        "",
    ]

    def is_main(n: str) -> bool:
        return not n.endswith(COST_SUFFIXES) and not n.endswith(".loadclient")

    main = _names(figures, targets, is_main)
    if main:
        out += _table(figures, main, targets, runs, ratio_cols)
    else:
        out.append("(none: only the Swift or transfer group ran)")
    cost = _names(figures, targets, lambda n: n.endswith(COST_SUFFIXES))
    if cost:
        out += ["", "### Cost: server peak RSS, CPU per GiB; latencies", ""]
        out += _table(figures, cost, targets, runs, ratio_cols[:1])
    client = _names(figures, [STREAMD, STATIC], lambda n: n.endswith(".loadclient"))
    if client:
        out += ["", "### Load client vs curl, one transfer (MiB/s)", "",
                "| target | figure | curl | load client | load client/curl |",
                "|---|---|---|---|---|"]
        for t in (STREAMD, STATIC):
            for name in client:
                base = name.removesuffix(".loadclient")
                lc, cu = figures.get(t, name), figures.get(t, base)
                if lc and cu:
                    out.append(f"| {t} | {base} | {_cell(cu, runs)} | {_cell(lc, runs)} | "
                               f"{lc.median / cu.median:.2f} |")
    if STAGES in figures.by_target:
        out += ["", "### Upload stages, in-process on the same buffers (MiB/s)", "",
                "| stage | MiB/s |", "|---|---|"]
        for name, fig in figures.by_target[STAGES].items():
            out.append(f"| {name} | {_cell(fig, runs)} |")
    out += _swift_section(figures, runs)
    out += _transfer_section(figures, runs)
    other = [r for r in doc["ratios"] if r["value"] is not None
             and not r["name"].startswith(("streamd/glance", "streamd/static",
                                           *SWIFT_RATIO_PREFIXES))]
    if other:
        out += ["", "### Ratios to baselines", "", "| ratio | value |", "|---|---|"]
        out += [f"| {r['name']} | {r['value']:.2f} |" for r in other]
    out += ["", "### Goals", "", "| goal | measured | result |", "|---|---|---|"]
    for g in doc["goals"]:
        v = "–" if g["value"] is None else f"{g['value']:.2f}"
        out.append(f"| {g['goal']} | {v} | {g['result']} |")
    if doc["notes"]:
        out += ["", "### Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(out) + "\n"


def _transfer_section(figures: Figures, runs: int) -> list[str]:
    """The transfer group: streamd-transfer, glanceclient and curl as a host runs them."""
    targets = [t for t in TRANSFER_TARGETS if t in figures.by_target]
    if TRANSFER not in targets:
        return []
    cols = [(f"{b}/{a}", b, a) for a, b in ((TRANSFER, GLANCECLIENT), (TRANSFER, CURL))
            if b in targets]
    out = ["", "### Transfer client: streamd-transfer, glanceclient, curl (one process each)",
           "", "Seconds are a client's wall time (its start-up included); `x data` is bytes on "
           "disk or moved over the data there was to move; `glanceclient/streamd-transfer` "
           "on a time is how many times faster streamd-transfer was.", ""]
    names = _names(figures, targets, lambda n: True)
    out += _table(figures, names, targets, runs, cols)
    return out


def _swift_section(figures: Figures, runs: int) -> list[str]:
    """The Swift group: Swift's ceiling, streamd's swift and s3 stores, Glance on Swift."""
    targets = [t for t in SWIFT_TARGETS if t in figures.by_target]
    if not targets:
        return []
    cols = [(f"{a}/{b}", a, b) for a, b in ((STREAMD_SWIFT, GLANCE_SWIFT),
                                            (STREAMD_S3, GLANCE_SWIFT), (STREAMD_SWIFT, SWIFT))
            if a in targets and b in targets]
    names = _names(figures, targets, lambda n: not n.endswith(".status"))
    status = _names(figures, targets, lambda n: n.endswith(".status"))
    out = ["", "### Swift store: streamd and Glance 33 on the same Swift", "",
           "`swift` is Swift's own ceiling (curl straight to Swift); ranged-read status below; "
           "what limits each figure is in the notes (`limit:`).", ""]
    main = [n for n in names if not _is_cost(n)]
    kinds = ["server_rss", "server_cpu", "swift_proxy_cpu", "swift_object_cpu", "client_cpu",
             "machine_cpu", "latency"]

    def order(name: str) -> tuple[int, int]:
        base, _, kind = name.rpartition(".")
        return (main.index(base) if base in main else len(main),
                kinds.index(kind) if kind in kinds else len(kinds))

    out += _table(figures, main, targets, runs, cols)
    out += ["", "#### Cost on Swift: server peak RSS, CPU per GiB (server, Swift's proxy and "
            "object server, client, the whole machine); latencies", ""]
    out += _table(figures, sorted((n for n in names if _is_cost(n)), key=order), targets, runs,
                  cols[:2])
    for name in status:
        cells = [f"{t} {_cell(figures.get(t, name), runs)}" for t in targets
                 if figures.get(t, name) is not None]
        out += ["", f"`{name}`: " + ", ".join(cells)]
    # the cache's hits over the static server's, its first download over the uncached store's
    for r in swift_ratios(figures):
        v = r.value(figures)
        if v is not None and r.name.startswith((f"{STREAMD_SWIFT}/{STATIC} ",
                                                f"{STREAMD_SWIFT}/{STREAMD_SWIFT_UNCACHED} ")):
            out += ["", f"`{r.name}`: {v:.2f}"]
    return out


# -- chart ---------------------------------------------------------------------------------
def chart(figures: Figures, path: Path, title: str) -> None:
    """Grouped bars, one group per workload, one bar per target; whiskers are min–max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in TARGET_ORDER if t in figures.by_target]
    swift = [t for t in SWIFT_TARGETS if t in figures.by_target]

    def transfer(n: str) -> bool:
        return (n.startswith(("upload.", "download.")) and not _is_cost(n)
                and not n.endswith(".loadclient"))

    panels = [
        ("throughput (MiB/s)", _names(figures, targets, transfer), targets),
        ("requests/s", _names(figures, targets, lambda n: n.startswith(("range.", "meta."))
                              and figures_unit(figures, n) == "req/s"), targets),
        ("server peak RSS (MiB)", _names(figures, targets, lambda n: n.endswith(".server_rss")),
         targets),
        ("on Swift: throughput (MiB/s)", _names(figures, swift, transfer), swift),
        ("on Swift: server peak RSS (MiB)",
         _names(figures, swift, lambda n: n.endswith(".server_rss")), swift),
    ]
    panels = [p for p in panels if p[1]]
    stages = figures.by_target.get(STAGES, {})
    rows = len(panels) + (1 if stages else 0)
    if rows == 0:
        return
    fig, axes = plt.subplots(rows, 1, figsize=(13, 4.2 * rows), squeeze=False)
    for ax, (label, names, group) in zip(axes[:, 0], panels, strict=False):
        width = 0.8 / max(1, len(group))
        for i, t in enumerate(group):
            xs, ys, lo, hi = [], [], [], []
            for j, name in enumerate(names):
                f = figures.get(t, name)
                if f is None or not f.samples:
                    continue
                xs.append(j + (i - (len(group) - 1) / 2) * width)
                ys.append(f.median)
                lo.append(f.median - f.min)
                hi.append(f.max - f.median)
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], label=t, color=COLORS.get(t), capsize=2)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.removesuffix(".server_rss") for n in names], rotation=20,
                           ha="right", fontsize=8)
        ax.set_ylabel(label)
        if label == "requests/s":
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if stages:
        ax = axes[-1, 0]
        names = list(stages)
        ax.barh(names, [stages[n].median for n in names], color="#2ca02c")
        ax.set_xlabel("upload stages in-process (MiB/s)")
        ax.set_xscale("log")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figures_unit(figures: Figures, name: str) -> str | None:
    for figs in figures.by_target.values():
        if name in figs:
            return figs[name].unit
    return None

"""What a run tells its user: progress (rich, on stderr), JSON lines, or nothing; and its
statistics, as imageio's client prints them (bytes moved, zero bytes skipped, MiB/s, the
time of each stage)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

MiB = 1024 * 1024


@dataclass
class Stats:
    """One image's run: bytes over the network, zero bytes not sent, seconds per stage."""

    image_id: str
    action: str
    size: int = 0
    moved: int = 0  # bytes sent or received
    zero_skipped: int = 0  # bytes of zero runs neither sent nor written
    resumed: int = 0  # bytes already there from an earlier run
    connections: int = 1
    extensions: bool = False
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
        start = clock()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + clock() - start

    def to_json(self) -> dict[str, Any]:
        seconds = self.stages.get("transfer", 0.0)
        return {
            "image_id": self.image_id, "action": self.action, "size": self.size,
            "bytes_moved": self.moved, "zero_bytes_skipped": self.zero_skipped,
            "bytes_resumed": self.resumed, "connections": self.connections,
            "extensions": self.extensions,
            "mib_per_s": round(self.moved / MiB / seconds, 1) if seconds else None,
            "seconds": {k: round(v, 3) for k, v in self.stages.items()},
        }


class Reporter:
    """``mode``: ``progress`` (a bar with rate and ETA on stderr), ``json`` (one JSON object
    per event on stdout) or ``quiet`` (errors only)."""

    def __init__(self, mode: str = "progress") -> None:
        self.mode = mode
        self._console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def event(self, kind: str, **fields: Any) -> None:
        """A fact worth a line: JSON in json mode, text in progress mode."""
        if self.mode == "json":
            print(json.dumps({"event": kind, **fields}), flush=True)
        elif self.mode == "progress":
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            self._console.print(f"[bold]{kind}[/bold] {text}", highlight=False)

    def error(self, message: str, **fields: Any) -> None:
        if self.mode == "json":
            print(json.dumps({"event": "error", "message": message, **fields}), flush=True)
        else:
            print(f"streamd-transfer: {message}", file=sys.stderr, flush=True)

    @contextmanager
    def progress(self, description: str, total: int, done: int = 0
                 ) -> Iterator[Callable[[int], None]]:
        """Yield ``advance(n)``; the bar (progress mode) ends with the block."""
        if self.mode != "progress":
            yield lambda n: None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), console=self._console,
                      transient=False) as progress:
            task = progress.add_task(description, total=total, completed=done)
            yield lambda n: progress.advance(task, n)

    def stats(self, stats: Stats) -> None:
        body = stats.to_json()
        if self.mode == "json":
            print(json.dumps({"event": "stats", **body}), flush=True)
        elif self.mode == "progress":
            seconds = ", ".join(f"{k} {v:.2f}s" for k, v in body["seconds"].items())
            self._console.print(
                f"{stats.action} {stats.image_id}: {stats.moved / MiB:.1f} MiB moved, "
                f"{stats.zero_skipped / MiB:.1f} MiB of zeros skipped, "
                f"{stats.resumed / MiB:.1f} MiB resumed, {body['mib_per_s']} MiB/s over "
                f"{stats.connections} connection(s)"
                f"{'' if stats.extensions else ' (plain Image API)'}; {seconds}",
                highlight=False)

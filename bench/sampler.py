"""Peak RSS and CPU seconds of a process tree, sampled with psutil in a background thread.

RSS is summed over the root process and all its descendants at each sample, and the peak
of those sums is kept; a short spike between two samples can be missed, so the interval is
small (``INTERVAL``). CPU seconds are user + system time of every process seen in the tree,
including those that exited during the window (their last sample counts; what they used
after it is lost, so this fits long-lived servers, not a tree of short-lived commands —
the harness measures its own CPU, curl included, with ``resource.getrusage`` instead).

A window also counts the whole machine's busy CPU (``machine_cpu``). On loopback a server's
own CPU is no measure of the work a transfer costs: the receiver's TCP processing runs in the
softirq of whichever process pushes the segments, so a server that sleeps in a blocking
``sendfile`` (the static server) hands much of it to the client, and one that polls keeps
it (bench/results/README.md, bench-20261203-122342).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

INTERVAL = 0.02  # seconds between samples: 50 Hz costs ~1 % of a core and catches chunk spikes
MiB = 1024 * 1024


@dataclass
class Window:
    """What one measured stretch of time cost a process tree."""

    peak_rss: int = 0  # bytes, highest sum over the tree in any sample
    cpu_seconds: float = 0.0  # user + system over the tree
    seconds: float = 0.0  # wall time
    machine_cpu_seconds: float = 0.0  # every process on the machine, see machine_cpu()

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / MiB


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent so far: all CPU time but idle and iowait."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class TreeSampler:
    """Samples the tree under ``root()`` (a callable: the pid can change, e.g. on restart)."""

    def __init__(self, root: Callable[[], int | None]) -> None:
        self._root = root
        self._cpu: dict[int, float] = {}  # pid -> last seen cpu seconds
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tree(self) -> list[psutil.Process]:
        pid = self._root()
        if pid is None:
            return []
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        rss = 0
        for p in self._tree():
            try:
                with p.oneshot():
                    mem = p.memory_info().rss
                    t = p.cpu_times()
            except psutil.Error:
                continue
            rss += mem
            cpu = t.user + t.system
            with self._lock:
                self._cpu[p.pid] = max(cpu, self._cpu.get(p.pid, 0.0))
        with self._lock:
            self._peak = max(self._peak, rss)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.sample()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _cpu_total(self) -> float:
        with self._lock:
            return sum(self._cpu.values())

    @contextmanager
    def window(self) -> Iterator[Window]:
        """Measure the ``with`` block; the Window is filled in when the block ends."""
        self.sample()
        with self._lock:
            self._peak = 0
        self.sample()
        cpu0 = self._cpu_total()
        machine0 = machine_cpu()
        t0 = time.perf_counter()
        w = Window()
        try:
            yield w
        finally:
            self.sample()
            w.seconds = time.perf_counter() - t0
            w.cpu_seconds = self._cpu_total() - cpu0
            w.machine_cpu_seconds = machine_cpu() - machine0
            with self._lock:
                w.peak_rss = self._peak

"""The practical ceiling: the same transfers against ``bench.staticserver`` on loopback.

That server only moves bytes (``sendfile`` out, ``recv_into`` and drop in), so its figures
are what this machine's loopback, kernel and clients allow; the report divides streamd's
figures by them. Uploads and downloads at concurrency 1 use curl, as for the targets, and
also the load client, to show the load client is not the bottleneck; higher concurrency uses
the load client. Figures go under the target name ``static``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench import curl
from bench.figures import Figures
from bench.inputs import Input
from bench.loadclient import HttpClient, gather_all, runner
from bench.sampler import TreeSampler

MiB = 1024 * 1024
GiB = 1024 * MiB
NAME = "static"


class StaticServer:
    """``python -m bench.staticserver`` as a subprocess serving ``path``."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.staticserver", "--file", str(path)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("bench.staticserver exited before printing its port")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def measure(inp: Input, concurrency: list[int], figures: Figures) -> None:
    """Record ``static`` figures: upload/download at each concurrency, curl and load client."""
    server = StaticServer(inp.path)
    sampler = TreeSampler(lambda: server.proc.pid)
    url = f"{server.url}/file"

    def add(name: str, nbytes: int, seconds: float, rss: float | None = None) -> None:
        figures.add(NAME, name, "MiB/s", nbytes / MiB / seconds)
        if rss is not None:
            figures.add(NAME, f"{name}.server_rss", "MiB", rss)

    try:
        res = curl.upload(url, inp.path, {})
        add("upload.random.c1", inp.size, res.seconds)
        res = curl.download(url, {})
        add("download.random.c1", res.downloaded, res.seconds)
        with runner() as aio:
            client = HttpClient(server.url)

            async def many(method: str, c: int) -> float:
                t0 = time.perf_counter()
                if method == "PUT":
                    coros = [client.request("PUT", "/file", upload=inp.path) for _ in range(c)]
                else:
                    coros = [client.request("GET", "/file", collect=False) for _ in range(c)]
                done = await gather_all(coros)
                if method == "GET" and any(r.body_size != inp.size for r in done):
                    raise RuntimeError("static server sent a short body")
                return time.perf_counter() - t0

            add("upload.random.c1.loadclient", inp.size, aio.run(many("PUT", 1)))
            add("download.random.c1.loadclient", inp.size, aio.run(many("GET", 1)))
            sampler.start()
            for c in concurrency:
                if c > 1:
                    with sampler.window() as w:
                        seconds = aio.run(many("PUT", c))
                    add(f"upload.random.c{c}", inp.size * c, seconds, w.peak_rss_mib)
                    with sampler.window() as w:
                        seconds = aio.run(many("GET", c))
                    add(f"download.random.c{c}", inp.size * c, seconds, w.peak_rss_mib)
            client.close()
    finally:
        sampler.stop()
        server.stop()

"""The Swift group (``--swift``): streamd and Glance 33 side by side on one OpenStack Swift.

One Swift for the session (``bench.swiftserver``: the project's single-node Swift, Swift API
+ s3api, under the session's temp dir), and on it:

- ``swift``: Swift's own ceiling, the same bytes with curl straight to Swift's proxy
  (tempauth token): one PUT, one GET, and 8 PUTs at once with the load client;
- ``streamd-swift``: streamd with ``default_store`` a swift store (``segment_size`` 200 MiB
  unless ``--swift-segment``): images past it are static large objects; ``cached = true``
  (a swift store's default): downloads go through the read-through cache;
- ``streamd-swift-uncached`` (``--swift-uncached``): the same store with ``cached = false``;
- ``streamd-s3``: streamd with an s3 store on Swift's s3api (boto3 multipart at the store's
  default part size and parts in flight); ``--skip s3`` leaves it out;
- ``glance-swift``: a second Glance 33 (``bench.glanceswift``) with glance_store's swift
  driver on the same Swift and its image cache on; ``--skip glance`` leaves it out.

Per run and target: one upload with curl (``upload.random.c1``), 8 at once with the load
client (``upload.random.c8``, with the server's peak RSS), one download with curl of the
freshly uploaded image (``download.random.c1``: a cache miss on both, every byte comes
from Swift), and ``RANGE_READS`` 1 MiB ranged reads at random offsets
(``range.random.c1.latency``, median ms, and ``range.random.c1.status``: 206 expected,
Glance answers 400 on swift). Besides the server's cost, every transfer records what Swift's
proxy and object server spent (``.swift_proxy_cpu``, ``.swift_object_cpu``, cpu s/GiB):
with ``workers = 0`` each is one process, so one busy core caps what Swift can take.

Then, on streamd-swift and glance-swift, the read-through cache's workloads (P1.4; ``--skip
cache`` leaves them out): ``cold.random.c8`` (8 clients on one never-read image at once),
``hit.random.c1`` / ``hit.random.c8`` once it is cached, and ``hit.range.c1`` (1 MiB ranges
of it); with what the store sent for each: ``.store_bytes`` from streamd's ``/metrics``, and
``.swift_gets`` / ``.swift_bytes`` from Swift's own access log (``bench.swiftlog``).
"""

from __future__ import annotations

import random
import resource
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from bench import curl
from bench.ceiling import StaticServer
from bench.figures import Figures
from bench.glanceswift import GLANCE_VENV, PROCESSES, GlanceSwift
from bench.goals import (
    CACHE_TARGETS,
    GLANCE_SWIFT,
    STATIC,
    STREAMD_S3,
    STREAMD_SWIFT,
    STREAMD_SWIFT_UNCACHED,
    SWIFT,
)
from bench.imageapi import ApiError
from bench.inputs import Input
from bench.keystonebridge import KeystoneBridge
from bench.loadclient import BodyTooLarge, HttpClient, HttpError, gather_all, runner
from bench.sampler import machine_cpu
from bench.swiftlog import SwiftAccessLog
from bench.swiftserver import SWIFT_KEY, SWIFT_USER, SwiftServer, free_port
from bench.targets import StreamdServer, Target
from bench.workloads import RANGE, Cost, Plan, TargetRun

MiB = 1024 * 1024
GiB = 1024 * MiB
SEGMENT_SIZE = 200 * MiB  # streamd's swift default (Glance's large_object_chunk_size too)
RANGE_READS = 10  # 1 MiB ranged reads per run and target, one after another
SWIFT_PROCESSES = ("proxy", "object")  # the two processes every byte goes through
CACHED_TIMEOUT = 120.0  # seconds for a downloaded image to be listed complete in /v2/cache
# streamd's cache counters (GET /metrics) by the names the figures use
METRICS = {"streamd_cache_store_read_bytes_total": "store_bytes",
           "streamd_cache_hits_total": "hits", "streamd_cache_misses_total": "misses"}
# fractions that name a limit in the notes
AT_CEILING = 0.9  # of Swift's own rate
FULL_CORE = 0.85  # of one core for one process
FULL_MACHINE = 0.85  # of all cores


def _own_cpu() -> float:
    """The harness's CPU seconds, curl children included."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class SwiftCpu:
    """CPU seconds of Swift's processes over a stretch of time, by process name."""

    def __init__(self, swift: SwiftServer) -> None:
        self.swift = swift

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each Swift process (and its children), and ``machine``: of
        every process on the machine (all CPU time but idle and iowait)."""
        out: dict[str, float] = {"machine": machine_cpu()}
        for name, pid in self.swift.pids().items():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
                out[name] = sum(sum(p.cpu_times()[:2]) for p in procs)
            except psutil.Error:
                continue
        return out

    @contextmanager
    def window(self) -> Iterator[dict[str, float]]:
        """A dict filled, when the block ends, with each process's CPU seconds in it."""
        spent: dict[str, float] = {}
        before = self.snapshot()
        try:
            yield spent
        finally:
            after = self.snapshot()
            spent.update({n: after[n] - before.get(n, 0.0) for n in after})


def _add_swift_cpu(figures: Figures, target: str, name: str, nbytes: int,
                   spent: dict[str, float]) -> None:
    gib = nbytes / GiB
    for proc in SWIFT_PROCESSES:
        if proc in spent:
            figures.add(target, f"{name}.swift_{proc}_cpu", "cpu s/GiB", spent[proc] / gib,
                        note=f"Swift's {proc} server, CPU seconds per GiB moved")
    if "machine" in spent:
        figures.add(target, f"{name}.machine_cpu", "cpu s/GiB", spent["machine"] / gib,
                    note="every process on the machine (a shared one), CPU seconds per GiB")


# -- the ceiling ---------------------------------------------------------------------------
def measure_ceiling(swift: SwiftServer, cpu: SwiftCpu, inp: Input, concurrency: list[int],
                    figures: Figures, container: str) -> None:
    """curl PUT and GET of ``inp`` straight to Swift, and c PUTs at once (load client)."""
    storage_url, token = swift.token()
    auth = {"X-Auth-Token": token}
    r = httpx.put(f"{storage_url}/{container}", headers=auth)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"Swift: PUT container {container} answered {r.status_code}")
    url = f"{storage_url}/{container}/ceiling"

    def add(name: str, nbytes: int, seconds: float, client_cpu: float,
            spent: dict[str, float]) -> None:
        figures.add(SWIFT, name, "MiB/s", nbytes / MiB / seconds)
        _add_swift_cpu(figures, SWIFT, name, nbytes, spent)
        figures.add(SWIFT, f"{name}.client_cpu", "cpu s/GiB", client_cpu / (nbytes / GiB))

    cpu0 = _own_cpu()
    with cpu.window() as spent:
        res = curl.upload(url, inp.path, auth)
    if res.status != 201:
        raise RuntimeError(f"Swift: curl PUT answered {res.status}")
    add("upload.random.c1", inp.size, res.seconds, _own_cpu() - cpu0, spent)
    cpu0 = _own_cpu()
    with cpu.window() as spent:
        res = curl.download(url, auth)
    if res.status != 200 or res.downloaded != inp.size:
        raise RuntimeError(f"Swift: curl GET answered {res.status} with {res.downloaded} bytes")
    add("download.random.c1", inp.size, res.seconds, _own_cpu() - cpu0, spent)
    names = ["ceiling"]
    with runner() as aio:
        client = HttpClient(storage_url, auth)
        try:
            for c in concurrency:
                if c <= 1:
                    continue
                objs = [f"ceiling-c{c}-{i}" for i in range(c)]
                names += objs

                async def many(objs: list[str] = objs) -> float:
                    t0 = time.perf_counter()
                    done = await gather_all([client.request("PUT", f"/{container}/{o}",
                                                            upload=inp.path) for o in objs])
                    if any(d.status != 201 for d in done):
                        raise RuntimeError(f"Swift: PUT answered {[d.status for d in done]}")
                    return time.perf_counter() - t0

                cpu0 = _own_cpu()
                with cpu.window() as spent:
                    seconds = aio.run(many())
                add(f"upload.random.c{c}", inp.size * c, seconds, _own_cpu() - cpu0, spent)
        finally:
            client.close()
    for name in names:
        httpx.delete(f"{url.rsplit('/', 1)[0]}/{name}", headers=auth)
    httpx.delete(f"{storage_url}/{container}", headers=auth)


# -- one target ----------------------------------------------------------------------------
class SwiftRun(TargetRun):
    """The Swift group's workloads against one Swift-backed target for one run."""

    def __init__(self, target: Target, plan: Plan, figures: Figures, session: str, run: int,
                 notes: list[str], cpu: SwiftCpu, access: SwiftAccessLog | None = None,
                 cache: bool = False) -> None:
        super().__init__(target, plan, figures, session, run, notes)
        self.swift_cpu = cpu
        self.access = access  # Swift's access log: what Swift itself served
        self.cache = cache  # also the cache workloads (cold.*, hit.*)
        self._spent: dict[str, float] = {}

    @contextmanager
    def _measure(self) -> Iterator[Cost]:
        with self.swift_cpu.window() as spent, super()._measure() as cost:
            yield cost
        self._spent = spent

    def _add_transfer(self, name: str, nbytes: int, seconds: float, cost: Cost) -> None:
        super()._add_transfer(name, nbytes, seconds, cost)
        _add_swift_cpu(self.figures, self.t.name, name, nbytes, self._spent)

    def workloads(self) -> None:
        inp = self.plan.inputs["random"]
        self._guarded("upload c1", self.upload_one, inp)
        for c in self.plan.concurrency:
            if c > 1:
                self._guarded(f"upload c{c}", self.upload_many, inp, c)
        self._guarded("download c1", self.download_once)
        if "range" not in self.plan.skip:
            self._guarded("ranged reads", self.ranged_reads)
        if self.cache:
            c = max(self.plan.concurrency)
            self._guarded(f"cold c{c}", self.cold_many, c)
            self._guarded("wait for the cache entry", self.wait_cached)
            self._guarded("cache hit c1", self.hit_once)
            if c > 1:
                self._guarded(f"cache hit c{c}", self.hit_many, c)
            self._guarded("ranged reads of a cached image", self.hit_ranges)
        self._guarded("delete transfer images", self.delete_transfer_images)
        self._guarded("sweep transfer images", self._sweep, self.api)

    def download_once(self) -> None:
        """The first download of the image just uploaded: every byte comes from Swift."""
        inp = self.plan.inputs["random"]
        (image_id,) = self._images("random.c1")
        with self._measure() as cost:
            res = curl.download(self._url(image_id), self.client.headers)
        if res.status != 200 or res.downloaded != inp.size:
            raise ApiError(f"curl download: HTTP {res.status}, {res.downloaded} bytes")
        self._add_transfer("download.random.c1", inp.size, res.seconds, cost)

    async def _ranged_reads(self, image_id: str, size: int,
                            rng: random.Random) -> tuple[int, list[float], str]:
        """``RANGE_READS`` random 1 MiB ranges, one at a time: the status (206 unless one was
        answered otherwise), their latencies, and why not when it was not 206."""
        latencies: list[float] = []
        for _ in range(RANGE_READS):
            a = rng.randrange(0, size - RANGE + 1)
            try:
                resp = await self.client.request(
                    "GET", f"/v2/images/{image_id}/file",
                    {"Range": f"bytes={a}-{a + RANGE - 1}"}, max_body=RANGE)
            except BodyTooLarge as e:
                return 200, latencies, f"Range ignored, the whole image sent ({e})"
            if resp.status != 206:
                return resp.status, latencies, resp.body[:300].decode("utf-8", "replace")
            if resp.body_size != RANGE:
                raise ApiError(f"206 with {resp.body_size} bytes, expected {RANGE}")
            latencies.append(resp.seconds)
        return 206, latencies, ""

    def ranged_reads(self) -> None:
        """``RANGE_READS`` 1 MiB ``Range: bytes=a-b`` reads, one at a time, random offsets.

        Records the status (the first that is not 206, else 206) and, when every answer was
        206 with exactly 1 MiB, the median latency.
        """
        (image_id,) = self._images("random.c1")
        size = self.plan.inputs["random"].size
        if size < RANGE:
            raise ValueError(f"image of {size} bytes is smaller than one {RANGE}-byte range")
        rng = random.Random(4321 + self.run_no)

        status, latencies, why = self._a(self._ranged_reads(image_id, size, rng))
        self._add("range.random.c1.status", "HTTP", status,
                  note="status of a 1 MiB Range: bytes=a-b read (206: served)")
        if status == 206:
            self._add("range.random.c1.latency", "ms", statistics.median(latencies) * 1000,
                      note=f"median of {RANGE_READS} 1 MiB ranged reads, one at a time")
        else:
            text = " ".join(why.split())
            note = f"{self.t.name}: a 1 MiB ranged read answered {status}: {text[:200]}"
            if note not in self.notes:
                self.notes.append(note)

    # -- the read-through cache (P1.4) -----------------------------------------------------
    def _mark(self) -> int | None:
        return None if self.access is None else self.access.mark()

    def _admin(self) -> HttpClient:
        return HttpClient(self.t.url, {**self.t.headers(self.project), "X-Roles": "admin"})

    def _cached_ids(self) -> set[str]:
        """The images the server's cache holds complete (``GET /v2/cache``, as an admin)."""
        async def go() -> set[str]:
            admin = self._admin()
            try:
                resp = await admin.request("GET", "/v2/cache")
            finally:
                admin.close()
            if resp.status != 200:
                raise ApiError(f"GET /v2/cache: HTTP {resp.status}: {resp.body[:200]!r}")
            return {e["image_id"] for e in resp.json().get("cached_images", [])}
        ids: set[str] = self._a(go())
        return ids

    def _store_counters(self) -> dict[str, float] | None:
        """streamd's cache counters from ``GET /metrics`` (None: the server has none, e.g.
        Glance): the bytes read from cached stores, hits, misses."""
        async def go() -> dict[str, float] | None:
            resp = await self.client.request("GET", "/metrics")
            if resp.status != 200:
                return None
            found: dict[str, float] = {}
            for line in resp.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition(" ")
                if name in METRICS:
                    found[METRICS[name]] = float(value)
            return found if "store_bytes" in found else None
        counters: dict[str, float] | None = self._a(go())
        return counters

    def _store_read(self, name: str, before: dict[str, float] | None, mark: int | None,
                    size: int, per_image: bool) -> None:
        """``<name>.store_bytes`` (streamd's /metrics) and ``<name>.swift_gets`` /
        ``.swift_bytes`` (Swift's access log) since ``before`` / ``mark``; bytes as multiples
        of the image's size when ``per_image``."""
        unit, scale = ("x image", size) if per_image else ("bytes", 1)
        after = self._store_counters() if before is not None else None
        if before is not None and after is not None:
            self._add(f"{name}.store_bytes", unit,
                      (after["store_bytes"] - before["store_bytes"]) / scale,
                      note="bytes read from the store (streamd_cache_store_read_bytes_total"
                           " at /metrics)" + (", in image sizes" if per_image else ""))
        if self.access is not None and mark is not None:
            gets, sent = self.access.client_gets(mark)
            self._add(f"{name}.swift_gets", "requests", gets,
                      note="object GETs Swift's proxy logged from clients (not SLO's own "
                           "segment subrequests; streamd reads a large object's segments "
                           "itself: one GET of its manifest and one per segment read)")
            self._add(f"{name}.swift_bytes", unit, sent / scale,
                      note="bytes Swift's proxy sent for them" +
                           (", in image sizes" if per_image else ""))

    def cold_many(self, c: int) -> None:
        """``c`` clients download one image nobody has read yet, all at once (the upload is
        not timed): wall time, and how often the store sent the image."""
        inp = self.plan.inputs["random"]
        image_id = self._create(inp, f"bench-cold-c{c}")
        self._a(self.api.upload(image_id, inp.path))
        self._uploaded["random.cold"] = [image_id]
        if image_id in self._cached_ids():
            raise ApiError(f"image {image_id} is cached before any download")
        before, mark = self._store_counters(), self._mark()

        async def go() -> float:
            t0 = time.perf_counter()
            got = await gather_all([self.api.download(image_id) for _ in range(c)])
            if any(r.body_size != inp.size for r in got):
                raise ApiError(f"short download: {[r.body_size for r in got]}")
            return time.perf_counter() - t0

        with self._measure() as cost:
            seconds = self._a(go())
        self._add_transfer(f"cold.random.c{c}", inp.size * c, seconds, cost)
        self._add(f"cold.random.c{c}.seconds", "s", seconds,
                  note=f"wall time: {c} clients download one never-read image at once")
        self._store_read(f"cold.random.c{c}", before, mark, inp.size, per_image=True)

    def wait_cached(self) -> None:
        """Until the server's cache lists the cold image complete (``CACHED_TIMEOUT``)."""
        (image_id,) = self._images("random.cold")
        deadline = time.monotonic() + CACHED_TIMEOUT
        while image_id not in self._cached_ids():
            if time.monotonic() > deadline:
                raise ApiError(f"image {image_id} not listed in GET /v2/cache "
                               f"{CACHED_TIMEOUT:.0f} s after its downloads")
            time.sleep(0.2)
        self._uploaded["random.cached"] = [image_id]

    def hit_once(self) -> None:
        """One curl download of the cached image: a cache hit."""
        inp = self.plan.inputs["random"]
        (image_id,) = self._images("random.cached")
        before, mark = self._store_counters(), self._mark()
        with self._measure() as cost:
            res = curl.download(self._url(image_id), self.client.headers)
        if res.status != 200 or res.downloaded != inp.size:
            raise ApiError(f"curl download: HTTP {res.status}, {res.downloaded} bytes")
        self._add_transfer("hit.random.c1", inp.size, res.seconds, cost)
        self._store_read("hit.random.c1", before, mark, inp.size, per_image=True)

    def hit_many(self, c: int) -> None:
        """``c`` downloads of the cached image at once (load client)."""
        inp = self.plan.inputs["random"]
        (image_id,) = self._images("random.cached")

        async def go() -> float:
            t0 = time.perf_counter()
            got = await gather_all([self.api.download(image_id) for _ in range(c)])
            if any(r.body_size != inp.size for r in got):
                raise ApiError(f"short download: {[r.body_size for r in got]}")
            return time.perf_counter() - t0

        before, mark = self._store_counters(), self._mark()
        with self._measure() as cost:
            seconds = self._a(go())
        self._add_transfer(f"hit.random.c{c}", inp.size * c, seconds, cost)
        self._store_read(f"hit.random.c{c}", before, mark, inp.size, per_image=True)

    def hit_ranges(self) -> None:
        """``RANGE_READS`` 1 MiB ranged reads of the cached image, one at a time: status,
        median latency, and what the store sent for them (nothing, when served from the
        cache)."""
        (image_id,) = self._images("random.cached")
        size = self.plan.inputs["random"].size
        rng = random.Random(8765 + self.run_no)
        before, mark = self._store_counters(), self._mark()

        status, latencies, why = self._a(self._ranged_reads(image_id, size, rng))
        self._add("hit.range.c1.status", "HTTP", status,
                  note="status of a 1 MiB Range: bytes=a-b read of a cached image")
        if status == 206:
            self._add("hit.range.c1.latency", "ms", statistics.median(latencies) * 1000,
                      note=f"median of {RANGE_READS} 1 MiB ranged reads of a cached image")
        else:
            text = " ".join(why.split())
            note = f"{self.t.name}: a 1 MiB ranged read of a cached image answered {status}: " \
                   f"{text[:200]}"
            if note not in self.notes:
                self.notes.append(note)
        self._store_read("hit.range.c1", before, mark, size, per_image=False)


def measure_static_hit(inp: Input, c: int, figures: Figures) -> None:
    """The static server sending one file to ``c`` clients at once (from the page cache):
    the ceiling of ``hit.random.c<c>``, under ``static``."""
    server = StaticServer(inp.path)
    try:
        with runner() as aio:
            client = HttpClient(server.url)

            async def many() -> float:
                t0 = time.perf_counter()
                done = await gather_all([client.request("GET", "/file", collect=False)
                                         for _ in range(c)])
                if any(r.body_size != inp.size for r in done):
                    raise RuntimeError("static server sent a short body")
                return time.perf_counter() - t0

            try:
                aio.run(many())  # the input into the page cache, as a cached entry would be
                figures.add(STATIC, f"hit.random.c{c}", "MiB/s",
                            inp.size * c / MiB / aio.run(many()),
                            note=f"the static server sending one file to {c} clients at once")
            finally:
                client.close()
    finally:
        server.stop()


# -- the session ---------------------------------------------------------------------------
class SwiftGroup:
    """Swift, the Swift-backed servers and their targets, for one session."""

    def __init__(self, *, tmp: Path, session: str, python: str, size: int, segment_size: int,
                 glance_port: int | None, skip: set[str], concurrency: list[int],
                 notes: list[str], uncached: bool = False,
                 glance_workers: int = PROCESSES) -> None:
        self.tmp = tmp
        self.session = session
        self.python = python
        self.size = size
        self.segment_size = segment_size
        self.glance_port = glance_port
        self.skip = skip
        self.concurrency = concurrency
        self.notes = notes
        self.uncached = uncached  # also streamd-swift-uncached: the swift store, cached = false
        self.glance_workers = glance_workers  # glance-swift's uWSGI processes
        self.cache = "cache" not in skip  # the cache workloads (cold.*, hit.*)
        self.access: SwiftAccessLog | None = None
        self.swift: SwiftServer | None = None
        self.cpu: SwiftCpu | None = None
        self.bridge: KeystoneBridge | None = None
        self.glance: GlanceSwift | None = None
        self.servers: list[StreamdServer] = []
        self.targets: list[Target] = []
        self.input: Input | None = None

    def _streamd(self, name: str, store_toml: str) -> None:
        config = self.tmp / f"{name}.toml"
        config.write_text(store_toml)
        server = StreamdServer(name, self.tmp / f"{name}-data",
                               env={"STREAMD_CONFIG": str(config)}, python=self.python,
                               transfers_only=True)
        try:
            server.start()
        except RuntimeError as e:
            self.notes.append(f"{name} did not start: {e}".splitlines()[0])
            print(f"bench: {name} did not start:\n{e}", flush=True)
            return
        self.servers.append(server)
        self.targets.append(server.target())
        print(f"bench: {name} up at {server.url} (pid {server.pid()})", flush=True)

    def start(self, inp: Input) -> None:
        """Swift first (a RuntimeError when it cannot start), then every server on it."""
        self.input = inp
        self.access = SwiftAccessLog().start()
        self.swift = SwiftServer(self.tmp / "swift", access_log_port=self.access.port).start()
        self.cpu = SwiftCpu(self.swift)
        print(f"bench: Swift up at {self.swift.endpoint} (proxy pid "
              f"{self.swift.pids().get('proxy')})", flush=True)
        tag = self.session.lower()
        self._streamd(STREAMD_SWIFT, self._swift_toml(f"streamd-{tag}", cached=True))
        if self.uncached:
            self._streamd(STREAMD_SWIFT_UNCACHED,
                          self._swift_toml(f"streamd-uncached-{tag}", cached=False))
        if "s3" not in self.skip:
            self._streamd(STREAMD_S3, f"""\
default_store = "s3swift"

[stores.s3swift]
type = "s3"
description = "S3 through Swift's s3api (bench)"
endpoint = "{self.swift.endpoint}"
bucket = "streamd-s3-{tag}"
access_key = "{SWIFT_USER}"
secret_key = "{SWIFT_KEY}"
""")
        if "glance" not in self.skip:
            self._start_glance(tag)

    def _swift_toml(self, container: str, *, cached: bool) -> str:
        """streamd's settings with a swift store as ``default_store``; ``cached`` (a swift
        store's default): downloads go through the node's read-through cache."""
        assert self.swift is not None
        return f"""\
default_store = "swift1"

[stores.swift1]
type = "swift"
description = "Swift (bench)"
auth_url = "{self.swift.auth_url}"
user = "{SWIFT_USER}"
key = "{SWIFT_KEY}"
container = "{container}"
segment_size = {self.segment_size}
cached = {"true" if cached else "false"}
"""

    def _start_glance(self, tag: str) -> None:
        assert self.swift is not None
        self.bridge = KeystoneBridge(self.swift.auth_url).start()
        port = self.glance_port or free_port()
        self.glance = GlanceSwift(
            self.tmp / "glance-swift", port, auth_url=self.bridge.url,
            storage_url=self.swift.storage_url, user=SWIFT_USER, key=SWIFT_KEY,
            container=f"glance-{tag}", segment_size=self.segment_size,
            processes=self.glance_workers)
        try:
            self.glance.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            self.notes.append(f"{GLANCE_SWIFT} did not start: {e}".splitlines()[0])
            print(f"bench: {GLANCE_SWIFT} did not start:\n{e}", flush=True)
            self.glance.stop()
            self.glance = None
            return
        self.notes += self.glance.notes
        self.notes.append(glance_config_note(self.size, self.segment_size, self.glance.cache,
                                             self.glance.processes, max(self.concurrency)))
        self.targets.append(self.glance.target())
        print(f"bench: {GLANCE_SWIFT} up at {self.glance.url} (uWSGI pid {self.glance.pid()})",
              flush=True)

    def run(self, run_no: int, figures: Figures) -> None:
        assert self.swift is not None and self.cpu is not None and self.input is not None
        t0 = time.monotonic()
        try:
            measure_ceiling(self.swift, self.cpu, self.input, self.concurrency, figures,
                            f"ceiling-{self.session.lower()}")
        except (RuntimeError, OSError, httpx.HTTPError, HttpError) as e:
            msg = f"swift run {run_no}: the ceiling failed: {e}"
            print(f"  ! {msg}", flush=True)
            self.notes.append(msg)
        print(f"  swift ceiling done in {time.monotonic() - t0:.0f} s", flush=True)
        c = max(self.concurrency)
        if self.cache and c > 1:
            try:
                measure_static_hit(self.input, c, figures)
            except (RuntimeError, OSError, HttpError) as e:
                msg = f"swift run {run_no}: the static server's hit.random.c{c} failed: {e}"
                print(f"  ! {msg}", flush=True)
                self.notes.append(msg)
        plan = Plan(inputs={"random": self.input}, concurrency=self.concurrency,
                    range_seconds=0.0, meta_images=0, page_images=0, skip=self.skip,
                    compare_clients=False)
        for target in self.targets:
            t0 = time.monotonic()
            SwiftRun(target, plan, figures, self.session, run_no, self.notes, self.cpu,
                     self.access, self.cache and target.name in CACHE_TARGETS).run()
            print(f"  {target.name} done in {time.monotonic() - t0:.0f} s", flush=True)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.glance is not None:
            self.glance.stop()
        if self.bridge is not None:
            self.bridge.stop()
        if self.swift is not None:
            self.swift.stop()
        if self.access is not None:
            self.access.stop()


def glance_store_version() -> str:
    done = subprocess.run([str(GLANCE_VENV / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print(m.version('glance_store'))"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


def glance_config_note(size: int, segment_size: int, cache: bool, workers: int, c: int) -> str:
    what = ("its image cache on as the peer's (the cache filter in the pipeline, centralized_db "
            "driver)") if cache else "no image cache"
    what += f", {workers} uWSGI workers of 1 thread" + (
        f" (the peer's {PROCESSES}: of {c} clients at once {workers} are served and the others "
        "wait their turn; --glance-swift-workers)" if workers < c else "")
    return (
        f"glance-swift: Glance 33 (glance_store {glance_store_version()}) on the same Swift, "
        f"{what}, Swift auth through a Keystone v3 bridge to tempauth (glance_store speaks "
        "Keystone v3 only). Its swift_store_large_object_size is left at glance_store's default "
        f"(5 GiB), so a {size / MiB:.0f} MiB image is one Swift object (streamd's: a static "
        f"large object of {segment_size / MiB:.0f} MiB segments past that size): with "
        "segments, glance_store 5.7.0 declares every "
        "segment's Content-Length as the full chunk, so a known-size upload whose size is not "
        "a multiple of it hangs on its last segment until Swift's client_timeout and fails 500")


# -- what limits each figure ---------------------------------------------------------------
def limit_notes(figures: Figures, cpus: int) -> list[str]:
    """One note per Swift-group transfer figure: its share of Swift's own rate and where the
    CPU went (cores busy = CPU s/GiB x GiB/s), and from that what limits it (a heuristic)."""
    notes: list[str] = []

    def med(target: str, name: str) -> float | None:
        return figures.median(target, name)

    put, get = med(SWIFT, "upload.random.c1"), med(SWIFT, "download.random.c1")
    if put is not None and get is not None:
        parts = [f"PUT {put:.0f} MiB/s", f"GET {get:.0f} MiB/s"]
        for name in figures.by_target.get(SWIFT, {}):
            if name.startswith("upload.random.c") and name.count(".") == 2 and \
                    name != "upload.random.c1":
                parts.append(f"{name.rsplit('.', 1)[1][1:]} PUTs at once "
                             f"{med(SWIFT, name):.0f} MiB/s")
        notes.append("Swift's own ceiling (curl straight to its proxy, one process, workers = 0; "
                     "object server one process on one directory): " + ", ".join(parts))
    for target in (SWIFT, STREAMD_SWIFT, STREAMD_SWIFT_UNCACHED, STREAMD_S3, GLANCE_SWIFT):
        for name in figures.by_target.get(target, {}):
            if not (name.startswith(("upload.", "download.", "cold.", "hit."))
                    and name.count(".") == 2):
                continue
            rate = med(target, name)
            if rate is None:
                continue
            gib_s = rate / 1024

            def cores(suffix: str, t: str = target, n: str = name, g: float = gib_s) -> float:
                v = med(t, f"{n}.{suffix}")
                return 0.0 if v is None else v * g

            server, client = cores("server_cpu"), cores("client_cpu")
            proxy, obj = cores("swift_proxy_cpu"), cores("swift_object_cpu")
            machine = cores("machine_cpu")
            ceiling = None if target == SWIFT else med(SWIFT, name)
            share = f"{rate / ceiling:.2f} of Swift's own" if ceiling else ""
            busy = (f"cores busy: server {server:.2f}, Swift proxy {proxy:.2f}, object "
                    f"{obj:.2f}, client {client:.2f}; whole machine {machine:.2f} of {cpus}")
            ours = server + proxy + obj + client
            if ceiling and rate / ceiling >= AT_CEILING:
                verdict = "at Swift's own rate: Swift limits it"
            elif max(machine, ours) >= FULL_MACHINE * cpus:
                others = max(0.0, machine - ours)
                verdict = ("all cores busy: CPU-bound on this machine (client, server and Swift "
                           f"share it; other processes {others:.2f} cores)")
            elif max(proxy, obj) >= FULL_CORE:
                which = "proxy" if proxy >= obj else "object server"
                verdict = f"Swift's {which} process is at a full core: Swift limits it"
            elif server >= FULL_CORE and target != SWIFT:
                verdict = "the server's process is at a full core: the server limits it"
            else:
                verdict = ("no process at a full core: waits limit it (round trips, segment "
                           "or part boundaries, disk)")
            head = f"{target} {name}: {rate:.0f} MiB/s" + (f" = {share}" if share else "")
            notes.append(f"limit: {head}; {busy}; {verdict}")
    return notes

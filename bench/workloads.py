"""The workloads, run against one target for one run: transfers, ranged reads, metadata.

Every workload records its figures into :class:`~bench.figures.Figures` under the target's
name, and for transfers also what the server's process tree cost (peak RSS, CPU seconds
per GiB moved) and what the harness itself spent (client CPU, curl included). A workload
that fails is recorded as a note and the others still run, so a half-built server still
gets the figures it can produce.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench import curl
from bench.figures import Figures
from bench.imageapi import ApiError, ImageApi
from bench.inputs import Input
from bench.loadclient import (
    BodyTooLarge,
    HttpClient,
    HttpError,
    gather_all,
    gather_limited,
    runner,
)
from bench.sampler import TreeSampler, Window
from bench.targets import Target

MiB = 1024 * 1024
GiB = 1024 * MiB
RANGE = 1 * MiB  # bytes per ranged read: one chunk, what a random-access reader asks for
LIST_REPEATS = 5  # first-page repeats for the limit=1000 latency
UPLOAD_ATTEMPTS = 3  # per stream (Glance on SQLite answers 500 "database is locked" at times)


@dataclass
class Plan:
    """What to run; the same for every target and run of one session."""

    inputs: dict[str, Input]
    concurrency: list[int]
    range_seconds: float  # per concurrency level
    meta_images: int  # images created, shown, listed and deleted per run
    page_images: int  # images paged through at limit 1000 (0: skip)
    skip: set[str] = field(default_factory=set)
    compare_clients: bool = True  # also time the load client on one transfer (vs curl)


@dataclass
class Cost:
    """Server and client cost of one measured stretch."""

    server: Window
    client_cpu: float = 0.0  # harness + its curl children, user + system seconds


def _own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Skipped(Exception):
    """A workload that needs what an earlier, failed one should have made."""


class TargetRun:
    """One run of every workload in ``plan`` against ``target``."""

    def __init__(self, target: Target, plan: Plan, figures: Figures, session: str,
                 run: int, notes: list[str]) -> None:
        self.t = target
        self.plan = plan
        self.figures = figures
        self.session = session
        self.run_no = run
        self.notes = notes
        self.sampler = TreeSampler(target.root_pid)
        self.sampled = target.root_pid() is not None
        self.project = f"{session}-r{run}"
        self.client = HttpClient(target.url, target.headers(self.project), target.ca_file)
        self.api = ImageApi(self.client)
        self._aio = runner()
        self._uploaded: dict[str, list[str]] = {}  # "random.c8" -> image ids
        self._all_ids: list[str] = []
        # the load client is compared with curl on one target: the figures differ per target
        # for reasons of the server (Glance caches on the first download), not the client
        self._compare_clients = plan.compare_clients and target.name == "streamd"

    # -- plumbing --------------------------------------------------------------------
    def _a(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self._aio.run(coro)

    @contextmanager
    def _measure(self) -> Iterator[Cost]:
        cpu0 = _own_cpu()
        with self.sampler.window() as w:
            cost = Cost(w)
            yield cost
        cost.client_cpu = _own_cpu() - cpu0

    def _add(self, name: str, unit: str, value: float, note: str = "") -> None:
        self.figures.add(self.t.name, name, unit, value, note)

    def _add_transfer(self, name: str, nbytes: int, seconds: float, cost: Cost) -> None:
        self._add(name, "MiB/s", nbytes / MiB / seconds)
        gib = nbytes / GiB
        if self.sampled:
            self._add(f"{name}.server_rss", "MiB", cost.server.peak_rss_mib)
            self._add(f"{name}.server_cpu", "cpu s/GiB", cost.server.cpu_seconds / gib)
            self._add(f"{name}.machine_cpu", "cpu s/GiB", cost.server.machine_cpu_seconds / gib,
                      "every process on the machine, server and client included")
        self._add(f"{name}.client_cpu", "cpu s/GiB", cost.client_cpu / gib)

    def _guarded(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Skipped as e:
            self.notes.append(f"{self.t.name} run {self.run_no}: {what} skipped: {e}")
        except (ApiError, HttpError, RuntimeError, OSError, KeyError, ValueError) as e:
            msg = f"{self.t.name} run {self.run_no}: {what} failed: {e}"
            print(f"  ! {msg}", flush=True)
            self.notes.append(msg)

    def _url(self, image_id: str) -> str:
        return f"{self.t.url}/v2/images/{image_id}/file"

    def _images(self, key: str) -> list[str]:
        """The images an earlier upload workload made (``"random.c8"``)."""
        if key not in self._uploaded:
            raise Skipped(f"no {key} images: that upload failed or did not run")
        return self._uploaded[key]

    def _create(self, inp: Input, name: str, container_format: str = "bare") -> str:
        image_id: str = self._a(self.api.create(name, inp.disk_format, container_format))
        self._all_ids.append(image_id)
        return image_id

    def _verify(self, image_id: str, inp: Input, *, inspected: bool = False) -> None:
        doc = self._a(self.api.show(image_id))
        if inspected and doc.get("virtual_size") != inp.virtual_size:
            raise ApiError(f"after upload: virtual_size={doc.get('virtual_size')}, expected "
                           f"{inp.virtual_size} (the disk format inspection's)")
        if doc.get("status") != "active" or doc.get("size") != inp.size:
            raise ApiError(f"after upload: status={doc.get('status')} size={doc.get('size')}, "
                           f"expected active and {inp.size}")
        if doc.get("checksum") not in (None, inp.md5):
            raise ApiError(f"checksum {doc.get('checksum')} != md5 of the input {inp.md5}")
        algo = self.t.os_hash_algo
        if algo and doc.get("os_hash_algo") != algo:
            raise ApiError(f"os_hash_algo {doc.get('os_hash_algo')!r}, expected {algo!r}")

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> None:
        """The run's workloads between the sampler's start and the clients' close."""
        self.sampler.start()
        try:
            self.workloads()
        finally:
            self.sampler.stop()
            self.client.close()
            if self.api.retried:
                self.notes.append(f"{self.t.name} run {self.run_no}: {self.api.retried} "
                                  "requests answered 500/503 and were retried")
            self._aio.close()

    def workloads(self) -> None:
        """Uploads, downloads, ranges and metadata; a target group runs its own set."""
        skip = self.plan.skip
        one_kind = self.t.uploads_only or self.t.transfers_only
        kinds = ["random"] if one_kind else list(self.plan.inputs)
        for kind in kinds:
            self._guarded(f"upload {kind} c1", self.upload_one, self.plan.inputs[kind])
            if kind == "qcow2":  # the same upload without the disk-format inspection
                self._guarded("upload qcow2 c1 uninspected", self.upload_one,
                              self.plan.inputs[kind], "ovf")
        for c in self.plan.concurrency:
            if c > 1:
                self._guarded(f"upload c{c}", self.upload_many, self.plan.inputs["random"], c)
        if not self.t.uploads_only:
            for kind in kinds:
                if kind != "qcow2":
                    self._guarded(f"download {kind} c1", self.download_one, kind)
            for c in self.plan.concurrency:
                if c > 1:
                    self._guarded(f"download c{c}", self.download_many, c)
            if "range" not in skip and (self.t.ranges or not self.t.transfers_only):
                for c in self.plan.concurrency:
                    self._guarded(f"ranges c{c}", self.ranges, c)
        self._guarded("delete transfer images", self.delete_transfer_images)
        self._guarded("sweep transfer images", self._sweep, self.api)
        if "metadata" not in skip and not one_kind:
            self._guarded("metadata", self.metadata)

    # -- transfers -------------------------------------------------------------------
    def upload_one(self, inp: Input, container_format: str = "bare") -> None:
        """One curl upload of ``inp``. A ``bare`` qcow2 is format-inspected on the way (its
        virtual_size checked after); another ``container_format`` is not inspected (Glance
        and streamd only inspect bare disks), which is how the qcow2 upload is measured
        without inspection on the same server: ``upload.qcow2.c1.uninspected``."""
        figure = f"upload.{inp.kind}.c1" + ("" if container_format == "bare" else ".uninspected")
        for attempt in range(UPLOAD_ATTEMPTS):
            image_id = self._create(inp, f"bench-{inp.kind}-c1", container_format)
            with self._measure() as cost:
                res = curl.upload(self._url(image_id), inp.path, self.client.headers,
                                  cacert=self.t.ca_file)
            if res.status not in (500, 503) or attempt == UPLOAD_ATTEMPTS - 1:
                break
            self.notes.append(f"{self.t.name} run {self.run_no}: upload {inp.kind} c1 answered "
                              f"{res.status}; retried on a new image")
        if res.status != 204:
            raise ApiError(f"curl upload: HTTP {res.status}")
        self._add_transfer(figure, inp.size, res.seconds, cost)
        self._verify(image_id, inp,
                     inspected=inp.virtual_size is not None and container_format == "bare")
        if container_format != "bare":
            return
        self._uploaded[f"{inp.kind}.c1"] = [image_id]
        if self._compare_clients and inp.kind == "random":
            image_id = self._create(inp, "bench-random-c1-loadclient")
            with self._measure() as cost:
                resp = self._a(self.api.upload(image_id, inp.path))
            self._add_transfer("upload.random.c1.loadclient", inp.size, resp.seconds, cost)
            self._verify(image_id, inp)

    def upload_many(self, inp: Input, c: int) -> None:
        ids = [self._create(inp, f"bench-{inp.kind}-c{c}-{i}") for i in range(c)]
        retried = 0

        async def one(n: int) -> None:
            """One stream; an upload answered 5xx is retried on a new image, in the clock."""
            nonlocal retried
            for attempt in range(UPLOAD_ATTEMPTS):
                try:
                    await self.api.upload(ids[n], inp.path)
                    return
                except (ApiError, HttpError) as e:
                    server_error = isinstance(e, HttpError) or e.status in (500, 503)
                    if not server_error or attempt == UPLOAD_ATTEMPTS - 1:
                        raise
                retried += 1
                ids[n] = await self.api.create(f"bench-{inp.kind}-c{c}-{n}-retry")
                self._all_ids.append(ids[n])

        async def go() -> float:
            t0 = time.perf_counter()
            await gather_all([one(n) for n in range(c)])
            return time.perf_counter() - t0

        with self._measure() as cost:
            seconds = self._a(go())
        self._add_transfer(f"upload.{inp.kind}.c{c}", inp.size * c, seconds, cost)
        if retried:
            self.notes.append(f"{self.t.name} run {self.run_no}: upload c{c}: {retried} upload(s) "
                              "failed (5xx or reset), retried on a new image within the timing")
        for image_id in ids:
            self._verify(image_id, inp)
        self._uploaded[f"{inp.kind}.c{c}"] = ids

    def download_one(self, kind: str) -> None:
        inp = self.plan.inputs[kind]
        (image_id,) = self._images(f"{kind}.c1")
        with self._measure() as cost:
            res = curl.download(self._url(image_id), self.client.headers,
                                    cacert=self.t.ca_file)
        if res.status != 200 or res.downloaded != inp.size:
            raise ApiError(f"curl download: HTTP {res.status}, {res.downloaded} bytes")
        self._add_transfer(f"download.{kind}.c1", inp.size, res.seconds, cost)
        if kind != "random":
            return
        with self._measure() as cost:  # Glance serves a second download from its cache
            res = curl.download(self._url(image_id), self.client.headers,
                                    cacert=self.t.ca_file)
        self._add_transfer("download.random.c1.again", inp.size, res.seconds, cost)
        if self._compare_clients:
            with self._measure() as cost:
                resp = self._a(self.api.download(image_id))
            self._add_transfer("download.random.c1.loadclient", resp.body_size, resp.seconds,
                               cost)

    def download_many(self, c: int) -> None:
        """``c`` images downloaded at once, each read once before (untimed).

        The static-server ceiling serves files from the page cache; the warm-up puts every
        target's images there too (streamd writes with O_DIRECT, so its images are not
        cached after the upload, Glance's are), so the figure compares the serving paths.
        A first, cold read is ``download.random.c1``.
        """
        ids = self._images(f"random.c{c}")
        size = self.plan.inputs["random"].size
        self._a(gather_all([self.api.download(i) for i in ids]))

        async def go() -> float:
            t0 = time.perf_counter()
            got = await gather_all([self.api.download(i) for i in ids])
            if any(r.body_size != size for r in got):
                raise ApiError(f"short download: {[r.body_size for r in got]}")
            return time.perf_counter() - t0

        with self._measure() as cost:
            seconds = self._a(go())
        self._add_transfer(f"download.random.c{c}", size * c, seconds, cost)

    def ranges(self, c: int) -> None:
        """Random 1 MiB ``Range: bytes=a-b`` reads of one image for ``range_seconds``."""
        (image_id,) = self._images("random.c1")
        size = self.plan.inputs["random"].size
        if size < RANGE:
            raise ValueError(f"image of {size} bytes is smaller than one {RANGE}-byte range")
        rng = random.Random(1234 + c)

        async def probe() -> None:
            try:
                await self.api.download(image_id, byte_range=(0, RANGE - 1), max_body=2 * RANGE)
            except BodyTooLarge as e:
                raise ApiError(f"Range ignored (whole image sent): {e}") from e

        async def worker(deadline: float, latencies: list[float]) -> None:
            while time.perf_counter() < deadline:
                a = rng.randrange(0, size - RANGE + 1)
                resp = await self.api.download(image_id, byte_range=(a, a + RANGE - 1),
                                               max_body=RANGE)
                if resp.body_size != RANGE:
                    raise ApiError(f"range of {resp.body_size} bytes, expected {RANGE}")
                latencies.append(resp.seconds)

        async def go() -> tuple[int, float, float]:
            latencies: list[float] = []
            t0 = time.perf_counter()
            deadline = t0 + self.plan.range_seconds
            await gather_all([worker(deadline, latencies) for _ in range(c)])
            return len(latencies), time.perf_counter() - t0, statistics.median(latencies)

        self._a(probe())
        with self._measure() as cost:
            n, seconds, median = self._a(go())
        self._add(f"range.random.c{c}", "req/s", n / seconds)
        self._add(f"range.random.c{c}.latency", "ms", median * 1000)
        if self.sampled:
            self._add(f"range.random.c{c}.server_rss", "MiB", cost.server.peak_rss_mib)

    def delete_transfer_images(self) -> None:
        ids, self._all_ids = self._all_ids, []
        if self.t.purge_cache:
            self._a(self._purge_cache(ids))
        self._a(gather_limited([self.api.delete(i) for i in ids], self.t.setup_concurrency))

    async def _purge_cache(self, ids: list[str]) -> None:
        """Drop the server's cached copies first: Glance keeps them when a delete half-fails."""
        admin = HttpClient(self.t.url, {**self.t.headers(self.project), "X-Roles": "admin"},
                           self.t.ca_file)
        try:
            for image_id in ids:
                await admin.request("DELETE", f"/v2/cache/{image_id}")
        finally:
            admin.close()

    # -- metadata --------------------------------------------------------------------
    def metadata(self) -> None:
        n = self.plan.meta_images
        c = max(self.plan.concurrency)
        project = f"{self.session}-r{self.run_no}-meta"
        client = HttpClient(self.t.url, self.t.headers(project), self.t.ca_file)
        api = ImageApi(client)
        try:
            # a fifth one at a time (no contention), the rest with c clients at once
            ids: list[str] = []
            first = n if c == 1 else max(1, n // 5)
            for level, count in ((1, first), (c, n - first)):
                if count <= 0:
                    continue
                names = [f"bench-meta-{len(ids) + i}" for i in range(count)]
                with self._measure() as cost:
                    t0 = time.perf_counter()
                    ids += self._a(gather_limited([api.create(x) for x in names], level))
                    seconds = time.perf_counter() - t0
                self._add(f"meta.create.c{level}", "req/s", count / seconds)
                if self.sampled:
                    self._add(f"meta.create.c{level}.server_cpu_ms", "ms",
                              cost.server.cpu_seconds / count * 1000,
                              note="server CPU milliseconds per create")
            if self.sampled:
                self._add(f"meta.create.c{c}.server_rss", "MiB", cost.server.peak_rss_mib)

            t0 = time.perf_counter()
            self._a(gather_limited([api.show(i) for i in ids], c))
            self._add(f"meta.show.c{c}", "req/s", n / (time.perf_counter() - t0))

            self._list_pages(api, 25, n)
            self._list_pages(api, 1000, n)
            if self.plan.page_images and "page10k" not in self.plan.skip:
                self._page_through()

            t0 = time.perf_counter()
            self._a(gather_limited([api.delete(i) for i in ids], c))
            self._add(f"meta.delete.c{c}", "req/s", n / (time.perf_counter() - t0))
        finally:
            self._guarded("sweep metadata images", self._sweep, api)
            client.close()
            if api.retried:
                self.notes.append(f"{self.t.name} run {self.run_no}: {api.retried} metadata "
                                  "requests answered 500/503 and were retried")

    def _sweep(self, api: ImageApi) -> None:
        _, half_deleted = self._a(sweep(api, self.t.setup_concurrency))
        if half_deleted:
            self.notes.append(
                f"{self.t.name} run {self.run_no}: {half_deleted} deleted images are still listed "
                "with status 'deleted' (a delete that half-failed: Glance on SQLite)")

    def _list_pages(self, api: ImageApi, limit: int, n: int) -> None:
        """Median latency of a page: all pages at ``limit`` 25, the first page repeated at 1000."""

        async def go() -> tuple[list[float], int]:
            times: list[float] = []
            biggest = 0
            first = f"/v2/images?limit={limit}"
            if limit >= n:  # one page holds them all: time it a few times
                pages: list[str | None] = [first] * LIST_REPEATS
            else:
                pages = [first]
            for path in pages:
                while path:
                    images, nxt, resp = await api.list_page(path)
                    times.append(resp.seconds)
                    biggest = max(biggest, len(images))
                    path = nxt if limit < n else None
            return times, biggest

        times, biggest = self._a(go())
        note = "" if biggest >= min(limit, n) else f"pages of {biggest} images, fewer than {limit}"
        self._add(f"meta.list.limit{limit}", "ms", statistics.median(times) * 1000, note)

    def _page_through(self) -> None:
        """Page through ``page_images`` images at limit 1000 (they are created once per target)."""
        project = f"{self.session}-page"
        client = HttpClient(self.t.url, self.t.headers(project), self.t.ca_file)
        api = ImageApi(client)
        try:
            have = len(self._a(api.list_all_ids(owner=project)))
            missing = self.plan.page_images - have
            if missing > 0:
                print(f"  {self.t.name}: creating {missing} images to page through "
                      f"(once per session)", flush=True)
                self._a(gather_limited([api.create(f"bench-page-{have + i}")
                                        for i in range(missing)], self.t.setup_concurrency))
            t0 = time.perf_counter()
            count = len(self._a(api.list_all_ids(1000)))
            seconds = time.perf_counter() - t0
            self._add(f"meta.page{self.plan.page_images}.limit1000", "s", seconds,
                      note="" if count >= self.plan.page_images else f"only {count} listed")
        finally:
            client.close()


async def sweep(api: ImageApi, concurrency: int) -> tuple[int, int]:
    """Delete the images the client's project owns (e.g. a create retried after a 500).

    Returns how many were deleted, and how many are listed as ``deleted`` already: Glance
    keeps listing an image whose delete set the status and then failed on a locked database,
    and answers 400 to deleting it again.
    """
    images = await api.list_all(owner=api.client.headers["X-Project-Id"])
    ids = [i["id"] for i in images if i["status"] != "deleted"]
    await gather_limited([api.delete(i) for i in ids], concurrency)
    return len(ids), len(images) - len(ids)


def cleanup_paged_images(target: Target, session: str) -> int:
    """Delete the images made for paging through; return how many."""
    client = HttpClient(target.url, target.headers(f"{session}-page"), target.ca_file)
    api = ImageApi(client)
    with runner() as aio:
        try:
            deleted: int = aio.run(sweep(api, target.setup_concurrency))[0]
            return deleted
        finally:
            client.close()

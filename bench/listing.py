"""Listing latency: page through N images at limit 25 and 1000, following ``next`` links.

    python -m bench.listing [--images 10000] [--url URL]
                            [--glance-url http://127.0.0.1:9393 [--glance-images 2000]]

Without ``--url`` a ``streamd serve`` is started on a free loopback port with a temporary
data dir and its default registry (SQLite under the data dir). Each target gets a fresh
project; its images are created through the Image API (concurrently: the creates are setup,
not the figure), then the whole listing is paged through ``--rounds`` times at each limit,
one request at a time on a keep-alive connection, as the project (``member,reader``: its
own images merged with the public ones) and as an admin (every project's images). Printed
per target, view and limit: pages per pass, median and p95 latency of one page (request
sent to body read), and the time for one whole pass. Every pass must list each created
image exactly once, or the run fails.

Images created on an existing server (``--url``, Glance) are deleted afterwards unless
``--keep``. Glance on SQLite creates (and deletes) only some 20-40 images/s: with
``--glance-images 2000`` its part takes a few minutes instead of a quarter of an hour.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.imageapi import ImageApi
from bench.loadclient import HttpClient, gather_limited, runner
from bench.targets import StreamdServer, Target, glance_target

LIMITS = (25, 1000)
ROUNDS = 3  # passes over the whole listing per limit and view; latencies pool all of them
CREATE_CONCURRENCY = 8  # concurrent creates while setting up (not measured)
VIEWS = {"project": "member,reader", "admin": "admin"}


@dataclass
class Pass:
    """Every page of one walk through the listing."""

    seconds: list[float]  # one per page, the empty last page included
    ids: list[str]


@dataclass
class Result:
    target: str
    view: str
    limit: int
    passes: list[Pass]

    @property
    def pages(self) -> list[float]:
        return [s for p in self.passes for s in p.seconds]

    def row(self) -> str:
        pages = self.pages
        p95 = statistics.quantiles(pages, n=20)[18] if len(pages) > 1 else pages[0]
        whole = statistics.median(sum(p.seconds) for p in self.passes)
        return (f"| {self.target} | {self.view} | {self.limit} | {len(self.passes[0].ids)} "
                f"| {len(self.passes[0].seconds)} | {statistics.median(pages) * 1000:.1f} "
                f"| {p95 * 1000:.1f} | {whole:.2f} |")


HEADER = ("| target | view | limit | images listed | pages/pass | median page ms | p95 page ms "
          "| s/pass |\n|---|---|---|---|---|---|---|---|")


async def walk(api: ImageApi, limit: int) -> Pass:
    """Follow ``next`` from the first page to the end, timing each request."""
    path: str | None = f"/v2/images?limit={limit}"
    seconds: list[float] = []
    ids: list[str] = []
    while path:
        t0 = time.perf_counter()
        images, path, _ = await api.list_page(path)
        seconds.append(time.perf_counter() - t0)
        ids += [i["id"] for i in images]
    return Pass(seconds, ids)


def check(p: Pass, created: set[str], view: str, limit: int) -> None:
    """Each created image exactly once, whatever else the view lists."""
    seen = [i for i in p.ids if i in created]
    if len(seen) != len(created) or set(seen) != created:
        missing, dupes = len(created - set(seen)), len(seen) - len(set(seen))
        raise SystemExit(f"{view} at limit {limit}: {missing} created images missing, "
                         f"{dupes} listed twice")
    if len(p.ids) != len(set(p.ids)):
        raise SystemExit(f"{view} at limit {limit}: an image was listed twice")


def measure(target: Target, images: int, rounds: int, delete_after: bool) -> list[Result]:
    project = f"bench-listing-{int(time.time())}"
    clients = {view: HttpClient(target.url, {**target.headers(project), "X-Roles": roles})
               for view, roles in VIEWS.items()}
    creator = ImageApi(clients["project"])
    results: list[Result] = []
    created: set[str] = set()
    with runner() as aio:
        try:
            t0 = time.perf_counter()
            created = set(aio.run(gather_limited(
                [creator.create(f"bench-listing-{i}") for i in range(images)],
                CREATE_CONCURRENCY)))
            took = time.perf_counter() - t0
            print(f"{target.name}: created {images} images in {took:.1f} s "
                  f"({images / took:.0f}/s, {CREATE_CONCURRENCY} at a time)", flush=True)
            for view, client in clients.items():
                api = ImageApi(client)
                for limit in LIMITS:
                    passes = [aio.run(walk(api, limit)) for _ in range(rounds)]
                    for p in passes:
                        check(p, created, view, limit)
                    results.append(Result(target.name, view, limit, passes))
                    print(results[-1].row(), flush=True)
        finally:
            if delete_after:
                aio.run(gather_limited([creator.delete(i) for i in created],
                                       CREATE_CONCURRENCY))
            for client in clients.values():
                client.close()
    return results


@contextmanager
def streamd_target(url: str | None) -> Iterator[tuple[Target, bool]]:
    """(target, whether its images must be deleted afterwards)."""
    if url:
        yield Target("streamd", url.rstrip("/"), lambda: None), True
        return
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        with StreamdServer("streamd", Path(tmp) / "data") as server:
            yield server.target(), False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000, help="images on streamd (10000)")
    p.add_argument("--url", help="an already running streamd (default: start one)")
    p.add_argument("--glance-url", help="also measure Glance, e.g. http://127.0.0.1:9393")
    p.add_argument("--glance-images", type=int, help="images on Glance (default --images)")
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"passes per limit ({ROUNDS})")
    p.add_argument("--keep", action="store_true", help="do not delete the images made")
    args = p.parse_args(argv)

    results: list[Result] = []
    with streamd_target(args.url) as (target, cleanup):
        results += measure(target, args.images, args.rounds, cleanup and not args.keep)
    if args.glance_url:
        glance = glance_target(args.glance_url)
        n = args.glance_images or args.images
        results += measure(glance, n, args.rounds, not args.keep)
    print()
    print(HEADER)
    for r in results:
        print(r.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())

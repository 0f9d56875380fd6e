"""Two API nodes on one registry, in one process: the leases an upload, a stage and an import
job hold, and the repair that leaves live work alone and puts back what a dead node left.

Time is trio's ``MockClock``: the renewals' waits are ``trio.sleep`` and the leases are
stamped by a clock that reads the same mock time, so the tests move time by jumping it and
never sleep (they only wait, briefly, for registry calls running in worker threads).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import Conflict, Gone
from streamd.io import BytesSource, MemoryStore
from streamd.service import images, repair, staging, transfers
from streamd.service.imports import IMPORT_TASK, IMPORTING_TO
from streamd.service.runtime import Runtime, open_runtime
from streamd.service.stage_host import STAGE_HOST

OWNER = RequestContext(project_id="p1", user_id="u1", roles=frozenset({"member"}))
TTL = 30.0
EPOCH = dt.datetime(2024, 5, 1, 12, 0, 0)


class GatedSource:
    """``head``, then nothing until ``gate`` is set, then ``tail``: an upload held open."""

    def __init__(self, head: bytes, tail: bytes) -> None:
        self._parts = [head, tail]
        self.reading = trio.Event()  # the pipeline has asked for bytes: the image is saving
        self.gate = trio.Event()

    async def readinto(self, buf: memoryview) -> int:
        self.reading.set()
        if not self._parts[0]:
            self._parts.pop(0)
            if not self._parts:
                return 0
            await self.gate.wait()
        part = self._parts[0]
        n = min(len(buf), len(part))
        buf[:n] = part[:n]
        self._parts[0] = part[n:]
        return n


@pytest.fixture
def wall(mock_clock: trio.testing.MockClock) -> Callable[[], dt.datetime]:
    """The leases' clock (naive UTC), moved with trio's mock clock; read from threads."""
    return lambda: EPOCH + dt.timedelta(seconds=mock_clock.current_time())


@asynccontextmanager
async def two_nodes(tmp_path: Path, wall: Callable[[], dt.datetime]
                    ) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Nodes a and b: one SQLite registry, a data dir (file store, staging) each."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    settings = [Settings(data_dir=tmp_path / name, database_url=url, auto_migrate=True,
                         node_id=f"node-{name}", lease_ttl=TTL,
                         worker_self_reference_url=f"http://{name}.example:9292")
                for name in ("a", "b")]
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings[0], nursery, clock=wall) as a, \
                open_runtime(settings[1], nursery, clock=wall) as b:
            yield a, b
        nursery.cancel_scope.cancel()


async def eventually(check: Callable[[], object]) -> None:
    """Until ``check()`` (a blocking registry read) is true: the work under test runs in
    worker threads, which the mock clock does not move."""
    for _ in range(500):
        if await trio.to_thread.run_sync(check):
            return
        await trio.to_thread.run_sync(time.sleep, 0.01)
    raise AssertionError("timed out")


async def new_image(rt: Runtime) -> str:
    image = await rt.db(rt.registry.create, {"name": "n", "owner": "p1", "disk_format": "raw",
                                             "container_format": "bare"})
    return image.id


def expiry(rt: Runtime, key: str) -> dt.datetime | None:
    holder = rt.leases.registry.holder(key)
    return None if holder is None else holder.expires_at


async def test_an_upload_holds_its_lease_renews_it_and_gives_it_back(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        key = f"upload:{image_id}"
        source = GatedSource(b"x" * 1000, b"y" * 1000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: transfers.upload(a, OWNER, image_id, source, size=2000))
            await source.reading.wait()
            holder = a.leases.registry.holder(key)
            assert holder is not None and holder.holder == "node-a"
            assert holder.expires_at == EPOCH + dt.timedelta(seconds=TTL)
            with pytest.raises(Conflict):  # nor can another node upload meanwhile
                await transfers.upload(b, OWNER, image_id, BytesSource(b"z"), size=1)
            for n in (1, 2, 3):  # renewed every TTL / 3: live for as long as it runs
                mock_clock.jump(TTL / 3)
                due = EPOCH + dt.timedelta(seconds=n * TTL / 3 + TTL)
                await eventually(lambda due=due: expiry(a, key) == due)
            assert (await b.db(b.registry.get, image_id)).status == "saving"
            source.gate.set()
        assert (await a.db(a.registry.get, image_id)).status == "active"
        assert a.leases.registry.holder(key) is None  # released at the end


async def test_deleting_through_another_node_stops_the_upload(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        source = GatedSource(b"x" * 1000, b"y" * 1000)
        outcome: list[BaseException] = []

        async def upload() -> None:
            try:
                await transfers.upload(a, OWNER, image_id, source, size=2000)
            except Gone as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            await source.reading.wait()
            await images.delete_image(b, OWNER, image_id)
            mock_clock.jump(TTL / 3)  # the next renewal finds the image gone
        assert outcome and "deleted" in str(outcome[0])
        assert a.leases.registry.holder(f"upload:{image_id}") is None
        assert not list((a.settings.images_dir).iterdir())  # nothing left of the data


async def test_a_stage_records_its_node_and_holds_a_lease(
        tmp_path: Path, wall: Callable[[], dt.datetime]) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        source = GatedSource(b"x" * 10, b"y" * 10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: staging.stage(a, OWNER, image_id, source, size=20))
            await source.reading.wait()
            assert a.leases.registry.holder(f"stage:{image_id}").holder == "node-a"  # type: ignore[union-attr]
            with pytest.raises(Conflict, match="a stage is in progress on node node-a"):
                await staging.stage(b, OWNER, image_id, BytesSource(b"z"), size=1)
            source.gate.set()
        image = await b.db(b.registry.get, image_id)
        assert image.properties[STAGE_HOST] == "http://a.example:9292"
        assert a.leases.registry.holder(f"stage:{image_id}") is None
        # a resume through the other node is refused with where the stage is
        with pytest.raises(Conflict, match="a.example"):
            await staging.stage(b, OWNER, image_id, BytesSource(b"z"), size=1,
                                content_range=staging.ContentRange(20, 20, 21))


async def test_repair_leaves_a_live_foreign_lease_and_repairs_an_expired_one(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        held, orphan = await new_image(a), await new_image(a)
        for image_id in (held, orphan):
            await a.db(a.registry.transition, image_id, "queued", "saving")
        # node a is uploading `held` (its lease, renewed by nobody from here on: a died);
        # `orphan` was left saving with no lease at all
        assert a.leases.registry.acquire(f"upload:{held}", "node-a", TTL)

        done = await repair.repair(b, startup=False)
        assert (done.uploads, done.left_alone) == (1, 1)
        assert (await b.db(b.registry.get, held)).status == "saving"  # never touched
        assert (await b.db(b.registry.get, orphan)).status == "queued"

        mock_clock.jump(TTL - 1)
        assert (await repair.repair(b, startup=False)).left_alone == 1  # still live
        mock_clock.jump(1)  # now it has run out
        assert (await repair.repair(b, startup=False)).uploads == 1
        assert (await b.db(b.registry.get, held)).status == "queued"
        assert b.leases.registry.holder(f"upload:{held}") is None  # given back after repair


async def test_repair_never_takes_its_own_live_work_but_start_up_does(
        tmp_path: Path, wall: Callable[[], dt.datetime]) -> None:
    async with two_nodes(tmp_path, wall) as (a, _):
        image_id = await new_image(a)
        await a.db(a.registry.transition, image_id, "queued", "saving")
        assert a.leases.registry.acquire(f"upload:{image_id}", "node-a", TTL)
        assert (await repair.repair(a, startup=False)).left_alone == 1
        # starting up, a node knows none of its work can be running: repaired at once
        assert (await repair.repair(a, startup=True)).uploads == 1
        assert (await a.db(a.registry.get, image_id)).status == "queued"


async def test_repair_of_an_import_staged_on_another_node(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    """b repairs a's interrupted glance-direct import: the stage is a's, so the image goes
    back to uploading (importable again through a) and its task fails."""
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        await staging.stage(a, OWNER, image_id, BytesSource(b"staged"), size=6)
        task = await a.db(a.tasks.create, "api_image_import", owner="p1", user_id="u1",
                          image_id=image_id,
                          input={"import_req": {"method": {"name": "glance-direct"}}})
        await a.db(a.registry.update, image_id, {"status": "importing"},
                   {IMPORT_TASK: task.id, IMPORTING_TO: "file"}, expected_status=["uploading"])
        assert a.leases.registry.acquire(f"import:{image_id}", "node-a", TTL)
        assert (await repair.repair(b, startup=False)).left_alone == 1
        mock_clock.jump(TTL)
        assert (await repair.repair(b, startup=False)).imports == 1
        image = await b.db(b.registry.get, image_id)
        assert (image.status, image.size) == ("uploading", 6)
        assert image.properties["os_glance_failed_import"] == "file"
        assert (await b.db(b.tasks.get, task.id)).status == "failure"


class SweptStore(MemoryStore):
    """A memory store that declares ``sweeps`` and records what it was asked to sweep."""

    capabilities = replace(MemoryStore.capabilities, sweeps=True)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.swept: list[str] = []

    async def discard_unfinished(self, key: str) -> int:
        self.swept.append(key)
        return 1


async def test_repair_sweeps_the_object_stores_without_a_copy(
        tmp_path: Path, wall: Callable[[], dt.datetime]) -> None:
    async with two_nodes(tmp_path, wall) as (_, b):
        swept = SweptStore("file")
        b.stores.stores["file"] = swept
        image_id = await new_image(b)
        await b.db(b.registry.transition, image_id, "queued", "saving")
        await repair.repair(b, startup=False)
        assert swept.swept == [image_id]


async def test_an_import_job_holds_its_lease_and_stops_when_the_image_goes(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        running, stopped = trio.Event(), trio.Event()

        async def job() -> None:
            running.set()
            try:
                await trio.sleep_forever()
            finally:
                stopped.set()

        async with a.jobs.reserve(image_id) as reservation:
            reservation.start(a.nursery, job)
        await running.wait()
        with pytest.raises(Conflict, match="an import is in progress on node node-a"):
            async with b.jobs.reserve(image_id):
                pass
        await b.db(b.registry.delete, image_id)
        mock_clock.jump(TTL / 3)
        await stopped.wait()
        await eventually(lambda: a.leases.registry.holder(f"import:{image_id}") is None)



async def test_a_node_at_a_new_url_keeps_its_stages_and_records_the_url(
        tmp_path: Path, wall: Callable[[], dt.datetime]) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        await staging.stage(a, OWNER, image_id, BytesSource(b"staged"), size=6)
        # as if a had staged it while it listened elsewhere, then restarted here
        await a.db(a.registry.update, image_id, set_properties={STAGE_HOST: "http://old:1"})
        assert (await repair.repair(a, startup=False)).stages == 0  # still its own stage
        assert await a.staging.stage(image_id) is not None
        await repair.repair(a, startup=True)
        image = await b.db(b.registry.get, image_id)
        assert image.properties[STAGE_HOST] == "http://a.example:9292"


async def test_deleting_through_another_node_stops_a_stage_and_drops_it(
        tmp_path: Path, wall: Callable[[], dt.datetime],
        mock_clock: trio.testing.MockClock) -> None:
    async with two_nodes(tmp_path, wall) as (a, b):
        image_id = await new_image(a)
        source = GatedSource(b"x" * 10, b"y" * 10)
        outcome: list[BaseException] = []

        async def stage() -> None:
            try:
                await staging.stage(a, OWNER, image_id, source, size=20)
            except Gone as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stage)
            await source.reading.wait()
            await images.delete_image(b, OWNER, image_id)
            mock_clock.jump(TTL / 3)
        assert outcome and "deleted" in str(outcome[0])
        assert await a.staging.stage(image_id) is None
        assert a.leases.registry.holder(f"stage:{image_id}") is None

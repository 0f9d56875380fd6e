"""The stage reaper, a periodic job in the server's nursery, on trio's MockClock: stages left
unchanged for ``stage_max_age`` are removed and their images queued again; no sleeps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio
import trio.testing

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.io import BytesSource
from streamd.service import periodic, staging
from streamd.service.runtime import Runtime, open_runtime

OWNER = RequestContext(project_id="p1", user_id="u1", roles=frozenset({"member"}))
MAX_AGE = 3600.0


async def new_image(rt: Runtime) -> str:
    image = await rt.db(rt.registry.create, {"name": "r", "owner": "p1", "disk_format": "raw",
                                             "container_format": "bare"})
    return image.id


async def eventually_gone(rt: Runtime, image_id: str) -> None:
    """Let the reaper (woken by a jump of the mock clock) run; its work is in threads."""
    for _ in range(500):
        if await rt.staging.stage(image_id) is None:
            return
        await trio.to_thread.run_sync(time.sleep, 0.01)
    raise AssertionError(f"the stage of {image_id} is still there")


async def test_stale_stages_are_reaped(tmp_path: Path,
                                       mock_clock: trio.testing.MockClock) -> None:
    settings = Settings(data_dir=tmp_path / "data", stage_max_age=MAX_AGE)
    wall0 = time.time()
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery) as rt, \
                periodic.periodic_jobs(rt, clock=lambda: wall0 + trio.current_time()):
            interval = periodic.reap_interval(rt)
            abandoned, complete, touched = [await new_image(rt) for _ in range(3)]
            await staging.stage(rt, OWNER, abandoned, BytesSource(b"half"), size=None,
                                content_range=staging.ContentRange(0, 3, 8))
            await staging.stage(rt, OWNER, complete, BytesSource(b"all of it"), size=9)
            await staging.stage(rt, OWNER, touched, BytesSource(b"xyz"), size=None,
                                content_range=staging.ContentRange(0, 2, 6))
            orphan = rt.staging.data_path("no-such-image")
            orphan.write_bytes(b"left by a deleted image")

            mock_clock.jump(interval)  # a pass: nothing is old enough yet
            await trio.testing.wait_all_tasks_blocked()
            for image_id in (abandoned, complete, touched):
                assert await rt.staging.stage(image_id) is not None

            # the third stage was appended to (its file touched) late in the hour
            late = wall0 + MAX_AGE + interval - 60
            os.utime(rt.staging.data_path(touched), (late, late))
            mock_clock.jump(MAX_AGE)
            for image_id in (abandoned, complete):
                await eventually_gone(rt, image_id)
                image = await rt.db(rt.registry.get, image_id)
                assert (image.status, image.size) == ("queued", None)
            assert not orphan.exists()
            assert await rt.staging.stage(touched) is not None
            assert (await rt.db(rt.registry.get, touched)).status == "uploading"
            nursery.cancel_scope.cancel()


async def test_a_reaped_image_can_be_staged_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", stage_max_age=MAX_AGE)
    async with trio.open_nursery() as nursery:
        async with open_runtime(settings, nursery) as rt:
            image_id = await new_image(rt)
            await staging.stage(rt, OWNER, image_id, BytesSource(b"abc"), size=None,
                                content_range=staging.ContentRange(0, 2, 4))
            assert await staging.reap_stale_stages(rt, now=time.time() + MAX_AGE + 1) == 1
            progress = await staging.stage(rt, OWNER, image_id, BytesSource(b"abcd"), size=4)
            assert progress == staging.StageProgress(4, 4, True)
            nursery.cancel_scope.cancel()

"""Big listing pages are read and rendered a few at a time (``images.listed_images``): the
memory a burst of them takes while being built stays in the heap afterwards, and building
them is CPU under one GIL, so more at once only costs memory. Small pages never wait."""

from __future__ import annotations

from pathlib import Path

import trio

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.service import images
from streamd.service.runtime import open_runtime

ADMIN = RequestContext(project_id="admin", user_id="a", roles=frozenset({"admin"}))


async def _most_open_at_once(tmp_path: Path, limit: int, readers: int = 8) -> int:
    settings = Settings(data_dir=tmp_path / f"data-{limit}")
    open_now = most = 0
    async with trio.open_nursery() as nursery, open_runtime(settings, nursery) as rt:
        for i in range(3):
            await images.create_image(rt, ADMIN, {"name": f"i{i}", "disk_format": "raw",
                                                  "container_format": "bare"})

        async def read() -> None:
            nonlocal open_now, most
            async with images.listed_images(rt, ADMIN, [("limit", str(limit))]) as page:
                assert len(page.images) == 3
                open_now += 1
                most = max(most, open_now)
                await trio.sleep(0.05)  # rendering
                open_now -= 1

        async with trio.open_nursery() as readers_nursery:
            for _ in range(readers):
                readers_nursery.start_soon(read)
        nursery.cancel_scope.cancel()
    return most


async def test_big_pages_are_built_a_few_at_a_time(tmp_path: Path) -> None:
    assert await _most_open_at_once(tmp_path, images.BIG_PAGE + 1) == images.BIG_PAGES


async def test_small_pages_never_wait(tmp_path: Path) -> None:
    assert await _most_open_at_once(tmp_path, images.BIG_PAGE) == 8

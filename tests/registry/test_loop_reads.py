"""Image reads in the event loop (``ImageRegistry.get_in_loop``, SQLite only): the same
record ``get`` reads, NotFound alike, and never a wait: a locked database gives None at once,
and the caller reads in a worker thread as before."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa
import trio

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import NotFound
from streamd.registry import ImageRegistry, make_loop_engine
from streamd.service import images
from streamd.service.access import visible_image
from streamd.service.runtime import open_runtime

ADMIN = RequestContext(project_id="admin", user_id="a", roles=frozenset({"admin"}))


def test_get_in_loop_reads_what_get_reads(engine: sa.Engine, backend: str) -> None:
    url = engine.url.render_as_string(hide_password=False)
    loop_engine = make_loop_engine(url)
    registry = ImageRegistry(engine, loop_engine=loop_engine)
    made = registry.create({"name": "loop", "disk_format": "raw", "container_format": "bare"},
                           {"os_distro": "debian", "k": "v"}, ["b", "a"])
    registry.transition(made.id, "queued", "saving")
    registry.transition(made.id, "saving", "active",
                        {"size": 3, "location": "file:///x/1", "store": "fs1"})
    if backend != "sqlite":  # a database across a socket is never read in the loop
        assert loop_engine is None and registry.get_in_loop(made.id) is None
        return
    assert loop_engine is not None
    try:
        assert registry.get_in_loop(made.id) == registry.get(made.id)
        try:
            registry.get_in_loop("00000000-0000-4000-8000-000000000000")
            raise AssertionError("NotFound expected")
        except NotFound:
            pass
        # a write made through the other engine is seen by the next read
        registry.add_location(made.id, "fs2", "file:///y/1")
        seen = registry.get_in_loop(made.id)
        assert seen is not None and [c.store for c in seen.locations] == ["fs1", "fs2"]
        assert seen.properties == {"os_distro": "debian", "k": "v"}
    finally:
        loop_engine.dispose()


def test_a_locked_database_is_not_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    settings_engine = sa.create_engine(f"sqlite:///{path}")
    with settings_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")  # a file for the lock to hold
    settings_engine.dispose()
    loop_engine = make_loop_engine(f"sqlite:///{path}")
    assert loop_engine is not None
    holder = sqlite3.connect(path)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        registry = ImageRegistry(settings_engine, loop_engine=loop_engine)
        t0 = time.monotonic()
        assert registry.get_in_loop("00000000-0000-4000-8000-000000000000") is None
        assert time.monotonic() - t0 < 1.0  # no busy wait (the pool's engine waits 30 s)
    finally:
        holder.close()
        loop_engine.dispose()


async def test_the_service_reads_in_a_thread_when_the_loop_may_not(tmp_path: Path) -> None:
    """While another connection holds the database, ``visible_image`` waits in a worker
    thread (the event loop keeps running other tasks) and gets the image once it is free."""
    settings = Settings(data_dir=tmp_path / "data")
    async with trio.open_nursery() as nursery, open_runtime(settings, nursery) as rt:
        made = await images.create_image(rt, ADMIN, {"name": "held"})
        assert rt.registry.get_in_loop(made.id) is not None
        # an exclusive lock needs every other connection closed first; the pools reconnect
        rt.registry.engine.dispose()
        assert rt.registry.loop_engine is not None
        rt.registry.loop_engine.dispose()
        holder = sqlite3.connect(settings.data_dir / "registry.sqlite")
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await trio.sleep(0.01)

        async def release() -> None:
            await trio.sleep(0.3)
            holder.rollback()
            holder.close()

        nursery.start_soon(tick)
        nursery.start_soon(release)
        t0 = trio.current_time()
        found = await visible_image(rt, ADMIN, made.id)
        assert found.id == made.id
        assert trio.current_time() - t0 >= 0.25  # it waited for the lock, in a thread
        assert ticks >= 10  # and the loop ran meanwhile
        nursery.cancel_scope.cancel()

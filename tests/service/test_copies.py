"""Copies of an image in several stores, in-process: copy_to (verified against the recorded
digests), the copy-image job's outcomes, and DELETE from one store with Glance's checks in
Glance's order. Three file stores; a store that fails is a ``StoreError``-raising wrapper
(tests/e2e/test_copy_image.py has real object stores, one of them down)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from streamd.config import Settings
from streamd.context import RequestContext
from streamd.errors import Conflict, Forbidden, NotFound
from streamd.io import BytesSource, Store, StoredObject, StoreError
from streamd.service import copies, imports, transfers
from streamd.service.runtime import Runtime, open_runtime
from streamd.store_config import parse_stores

ADMIN = RequestContext(project_id="admin", user_id="a", roles=frozenset({"admin"}))
OWNER = RequestContext(project_id="p1", user_id="u1", roles=frozenset({"member"}))
DATA = random.Random(3).randbytes(3 * 1024 * 1024 + 11)


def settings(tmp_path: Path) -> Settings:
    tables = {name: {"type": "file", "path": str(tmp_path / name)} for name in ("a", "b", "c")}
    return Settings(data_dir=tmp_path / "data", stores=parse_stores(tables, {}),
                    default_store="a", chunk_size=256 * 1024)


async def active_image(rt: Runtime, data: bytes = DATA, store: str = "a") -> str:
    image = await rt.db(rt.registry.create, {"name": "c", "owner": "p1", "disk_format": "raw",
                                             "container_format": "bare"})
    await transfers.upload(rt, OWNER, image.id, BytesSource(data), size=len(data),
                           store_id=store)
    return image.id


def files(tmp_path: Path, store: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / store).iterdir())


async def read_copy(rt: Runtime, image_id: str, store: str) -> bytes:
    image = await rt.db(rt.registry.get, image_id)
    (copy,) = [c for c in image.locations if c.store == store]
    return b"".join([bytes(c) async for c in rt.stores.get(store).read(copy.location)])


class Broken:
    """A store whose writes fail after the first chunk (its other calls pass through)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities

    async def write(self, chunks: AsyncIterable[memoryview], *, key: str,
                    size: int | None = None) -> StoredObject:
        async for _ in chunks:
            raise StoreError(f"store {self.name!r} is unreachable: test")
        raise AssertionError("no data")

    def read(self, location: str, offset: int = 0,
             length: int | None = None) -> AsyncIterator[memoryview | bytes]:
        return self.inner.read(location, offset, length)

    async def delete(self, location: str) -> None:
        await self.inner.delete(location)

    async def stat(self, location: str) -> int:
        return await self.inner.stat(location)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def wait_for_task(rt: Runtime, image_id: str) -> Any:
    for _ in range(1000):
        (task,) = await rt.db(rt.tasks.for_image, image_id)
        if task.status in ("success", "failure"):
            return task
        await trio.sleep(0.01)
    raise AssertionError("the import task did not finish")


async def test_copy_to_streams_verifies_and_records(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, open_runtime(settings(tmp_path), nursery) as rt:
        image_id = await active_image(rt)
        copied = await copies.copy_to(rt, image_id, "b")
        assert copied.stores == ("a", "b") and copied.status == "active"
        assert await read_copy(rt, image_id, "b") == DATA
        with pytest.raises(Conflict, match="already present at store 'b'"):
            await copies.copy_to(rt, image_id, "b")
        nursery.cancel_scope.cancel()


async def test_a_copy_whose_bytes_differ_from_the_recorded_digests_is_deleted(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, open_runtime(settings(tmp_path), nursery) as rt:
        image_id = await active_image(rt)
        (source,) = (tmp_path / "a").iterdir()
        tampered = bytearray(source.read_bytes())
        tampered[1234] ^= 0xFF  # same size, one bit of rot
        source.write_bytes(bytes(tampered))
        with pytest.raises(StoreError, match="checksum, xxh3, os_hash_value differ"):
            await copies.copy_to(rt, image_id, "b")
        assert files(tmp_path, "b") == []
        assert (await rt.db(rt.registry.get, image_id)).stores == ("a",)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("must_succeed", [True, False])
async def test_copy_image_job_with_a_failing_store(tmp_path: Path, must_succeed: bool) -> None:
    async with trio.open_nursery() as nursery, open_runtime(settings(tmp_path), nursery) as rt:
        rt.stores.stores["b"] = Broken(rt.stores.stores["b"])  # type: ignore[assignment]
        image_id = await active_image(rt)
        await imports.start_import(rt, ADMIN, image_id, {
            "method": {"name": "copy-image"}, "stores": ["c", "b"],
            "all_stores_must_succeed": must_succeed})
        task = await wait_for_task(rt, image_id)
        image = await rt.db(rt.registry.get, image_id)
        assert image.status == "active"
        assert image.properties[imports.FAILED_IMPORT] == "b"
        assert image.properties[imports.IMPORTING_TO] == ""
        assert imports.IMPORT_TASK not in image.properties
        assert "Copy to store 'b' failed" in task.message and "unreachable" in task.message
        assert files(tmp_path, "b") == []
        if must_succeed:  # all or nothing: the copy to c is undone
            assert task.status == "failure"
            assert image.stores == ("a",) and files(tmp_path, "c") == []
        else:
            assert task.status == "success"
            assert image.stores == ("a", "c") and await read_copy(rt, image_id, "c") == DATA
        nursery.cancel_scope.cancel()


async def test_delete_from_store_checks_in_glances_order(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery, open_runtime(settings(tmp_path), nursery) as rt:
        image_id = await active_image(rt)
        with pytest.raises(Conflict, match="The selected store nope is not available on this"):
            await copies.delete_from_store(rt, ADMIN, "nope", image_id)
        with pytest.raises(NotFound):
            await copies.delete_from_store(rt, ADMIN, "a", "no-such-image")
        # the only copy: 403 whichever store is named, before "is it in that store?"
        for store in ("a", "b"):
            with pytest.raises(Forbidden, match="only store containing it"):
                await copies.delete_from_store(rt, ADMIN, store, image_id)
        await copies.copy_to(rt, image_id, "b")
        with pytest.raises(Forbidden, match="delete_image_location"):  # owners too: admins
            await copies.delete_from_store(rt, OWNER, "b", image_id)
        with pytest.raises(NotFound, match="is not stored in store c"):
            await copies.delete_from_store(rt, ADMIN, "c", image_id)
        await rt.db(rt.registry.update, image_id, {"status": "deactivated"})
        with pytest.raises(Conflict, match="status is not 'active'"):
            await copies.delete_from_store(rt, ADMIN, "b", image_id)
        await rt.db(rt.registry.update, image_id, {"status": "active"})
        left = await copies.delete_from_store(rt, ADMIN, "a", image_id)
        assert left.stores == ("b",) and files(tmp_path, "a") == []
        assert await read_copy(rt, image_id, "b") == DATA
        nursery.cancel_scope.cancel()

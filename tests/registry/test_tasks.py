"""Tasks in the registry, on SQLite, PostgreSQL and MariaDB: create, conditional status
changes, listing pages in Glance's orders, an image's tasks, failing what a crash left."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from streamd.errors import BadRequest, Conflict, NotFound
from streamd.registry.tasks import TaskQuery, TaskRegistry
from tests.registry.conftest import FakeClock


@pytest.fixture
def tasks(engine: sa.Engine, clock: FakeClock) -> TaskRegistry:
    return TaskRegistry(engine, clock=clock)


def test_create_change_and_read(tasks: TaskRegistry, clock: FakeClock) -> None:
    task = tasks.create("api_image_import", owner="p1", image_id="img", user_id="u1",
                        input={"image_id": "img", "import_req": {"method": {"name": "x"}}})
    assert (task.status, task.message, task.result, task.expires_at) == ("pending", "", None,
                                                                         None)
    assert task.input["import_req"] == {"method": {"name": "x"}}
    clock.advance()
    done = tasks.change(task.id, ["pending"], "processing")
    assert done.status == "processing" and done.updated_at == clock.now
    with pytest.raises(Conflict, match="is processing"):
        tasks.change(task.id, ["pending"], "processing")
    done = tasks.change(task.id, ["processing"], "success", message="Copied 1 MiB",
                        result={"image_id": "img"}, expires_at=clock.now)
    assert (done.status, done.result, done.expires_at) == ("success", {"image_id": "img"},
                                                           clock.now)
    assert tasks.get(task.id) == done
    with pytest.raises(NotFound, match="Could not find task nope"):
        tasks.get("nope")


def test_fail_unfinished(tasks: TaskRegistry) -> None:
    pending = tasks.create("t", owner="p", image_id="a", user_id=None, input={})
    running = tasks.create("t", owner="p", image_id="b", user_id=None, input={})
    tasks.change(running.id, ["pending"], "processing")
    finished = tasks.create("t", owner="p", image_id="c", user_id=None, input={})
    tasks.change(finished.id, ["pending"], "success")
    assert tasks.fail_unfinished("server stopped") == 2
    assert [tasks.get(t.id).status for t in (pending, running, finished)] == [
        "failure", "failure", "success"]
    assert tasks.get(pending.id).message == "server stopped"


def test_listing_pages_and_image_tasks(tasks: TaskRegistry, clock: FakeClock) -> None:
    made = []
    for i in range(5):
        clock.advance()
        made.append(tasks.create("t", owner=f"p{i % 2}", image_id="img" if i < 3 else "other",
                                 user_id=None, input={}))
    newest_first = [t.id for t in reversed(made)]
    page = tasks.list(TaskQuery(limit=2))
    assert [t.id for t in page] == newest_first[:2]
    page = tasks.list(TaskQuery(limit=2, marker=page[-1].id))
    assert [t.id for t in page] == newest_first[2:4]
    assert [t.id for t in tasks.list(TaskQuery(sort_dir="asc"))] == [t.id for t in made]
    assert [t.id for t in tasks.list(TaskQuery(owner="p1"))] == [made[3].id, made[1].id]
    tasks.change(made[0].id, ["pending"], "failure")
    assert [t.id for t in tasks.list(TaskQuery(status="failure"))] == [made[0].id]
    assert [t.id for t in tasks.for_image("img")] == [made[2].id, made[1].id, made[0].id]
    with pytest.raises(BadRequest, match="Sort key"):
        tasks.list(TaskQuery(sort_key="owner"))
    with pytest.raises(BadRequest, match="Invalid marker"):
        tasks.list(TaskQuery(marker="nope"))

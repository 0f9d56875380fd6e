"""Claims on an image between the worker processes of one server (an flock per image)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from streamd.errors import Conflict
from streamd.service.jobs import ImageJobs


def test_a_claim_in_one_process_is_a_conflict_in_another(tmp_path: Path) -> None:
    here, there = ImageJobs(tmp_path / "locks"), ImageJobs(tmp_path / "locks")
    with here.claim("img-1", "stage"):
        with pytest.raises(Conflict, match="another worker process"):
            with there.claim("img-1", "stage"):
                pass
        with there.claim("img-2", "stage"):  # other images are free
            pass
    with there.claim("img-1", "import"):  # released with the block
        pass


async def test_a_started_job_holds_the_lock_until_it_ends(tmp_path: Path) -> None:
    here, there = ImageJobs(tmp_path / "locks"), ImageJobs(tmp_path / "locks")
    release = trio.Event()

    async def job() -> None:
        await release.wait()

    async with trio.open_nursery() as nursery:
        async with here.reserve("img-1", "import") as reservation:
            reservation.start(nursery, job)
        with pytest.raises(Conflict):
            with there.claim("img-1", "stage"):
                pass
        release.set()
    with there.claim("img-1", "stage"):
        pass


def test_image_ids_never_become_paths(tmp_path: Path) -> None:
    jobs = ImageJobs(tmp_path / "locks")
    with jobs.claim("../../etc/passwd", "stage"):
        pass
    assert all(p.parent == tmp_path / "locks" for p in (tmp_path / "locks").iterdir())
    assert not (tmp_path / "etc").exists()


def test_one_process_needs_no_lock_files(tmp_path: Path) -> None:
    jobs = ImageJobs()
    with jobs.claim("img-1", "stage"):
        with pytest.raises(Conflict, match="a stage is running"):
            with jobs.claim("img-1", "import"):
                pass

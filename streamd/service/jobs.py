"""Work on an image that outlives a request, and who holds an image's staged data.

Two things need one owner per image in this process: a stage request appending to the
staging area, and an import job moving data into the store. ``ImageJobs.claim`` gives an
image to one of them at a time (the other gets 409 at once instead of racing it). Import
jobs run as tasks in the server's nursery (``Runtime.nursery``), each inside a cancel
scope kept here, so that deleting the image stops its job and waits for it to clean up,
and shutting down cancels them all and waits (``drain``) before the registry is closed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

import trio

from streamd.errors import Conflict

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds cancelled jobs get to put their images back on shutdown

Job = Callable[[], Awaitable[None]]


class ImageJobs:
    """The claims on images and the import jobs running in this process."""

    def __init__(self) -> None:
        self._claims: dict[str, str] = {}  # image id -> what holds it ("stage", "import")
        self._jobs: dict[str, tuple[trio.CancelScope, trio.Event]] = {}

    def busy(self, image_id: str) -> str | None:
        """What holds ``image_id`` (e.g. "stage"), or None."""
        return self._claims.get(image_id)

    def _take(self, image_id: str, what: str) -> None:
        holder = self._claims.get(image_id)
        if holder is not None:
            raise Conflict(f"New operation on image '{image_id}' is not permitted as prior "
                           f"operation is still in progress (a {holder} is running); retry "
                           "when it has finished")
        self._claims[image_id] = what

    @contextlib.contextmanager
    def claim(self, image_id: str, what: str) -> Iterator[None]:
        """Hold ``image_id`` for ``what`` during the block; 409 if something else holds it."""
        self._take(image_id, what)
        try:
            yield
        finally:
            del self._claims[image_id]

    @contextlib.contextmanager
    def reserve(self, image_id: str, what: str) -> Iterator[Reservation]:
        """Claim ``image_id`` (409 if held) for a job that ``Reservation.start`` launches.

        Until the job starts, the claim is the block's and ends with it; once started, it
        is the job's and ends with the job.
        """
        self._take(image_id, what)
        reservation = Reservation(self, image_id)
        try:
            yield reservation
        finally:
            if not reservation.started:
                del self._claims[image_id]

    def _start(self, nursery: trio.Nursery, image_id: str, job: Job) -> None:
        scope, done = trio.CancelScope(), trio.Event()

        async def run() -> None:
            try:
                with scope:
                    await job()
            finally:
                del self._jobs[image_id]
                del self._claims[image_id]
                done.set()

        self._jobs[image_id] = (scope, done)
        try:
            nursery.start_soon(run)
        except BaseException:  # the nursery is closing: the job never runs
            del self._jobs[image_id]
            raise

    async def stop(self, image_id: str) -> None:
        """Cancel the job on ``image_id``, if any, and wait until it has cleaned up."""
        entry = self._jobs.get(image_id)
        if entry is not None:
            scope, done = entry
            scope.cancel()
            await done.wait()

    async def drain(self, within: float = DRAIN_TIMEOUT) -> None:
        """Cancel every job and wait (shielded, at most ``within`` seconds) for them to end."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(within) as waited:
                entries = list(self._jobs.values())
                for scope, _ in entries:
                    scope.cancel()
                for _, done in entries:
                    await done.wait()
            if waited.cancelled_caught:
                log.warning("%d import job(s) did not finish cleaning up within %gs",
                            len(self._jobs), within)


class Reservation:
    """A claim on an image waiting for its job (see ``ImageJobs.reserve``)."""

    def __init__(self, jobs: ImageJobs, image_id: str) -> None:
        self._jobs = jobs
        self.image_id = image_id
        self.started = False

    def start(self, nursery: trio.Nursery, job: Job) -> None:
        """Run ``job`` in ``nursery``, holding the claim until it ends.

        ``job`` must not raise: an exception would take the server's nursery down. A
        cancellation (``ImageJobs.stop``, shutdown) is fine.
        """
        self._jobs._start(nursery, self.image_id, job)
        self.started = True

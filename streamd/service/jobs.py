"""Work on an image that outlives a request, and who holds an image's staged data.

Two things need one owner per image: a stage request appending to the staging area, and
an import job moving data into the store. ``ImageJobs.claim`` gives an image to one of them
at a time (the other gets 409 at once instead of racing it). With several worker processes
(``workers`` > 1) a claim is also an ``flock`` on a file per image in ``lock_dir``, which
the processes of one server share. Between nodes, an import job also holds an ``import``
lease in the registry (``streamd.service.leases``), taken before the image becomes
``importing`` and renewed while the job runs, so that no other node's repair touches it.
Import jobs run as tasks in the server's nursery (``Runtime.nursery``), each inside a cancel
scope kept here, so that deleting the image stops its job and waits for it to clean up
(deleted through another node: the lease's renewal finds the image gone and cancels the
job the same way), and shutting down cancels them all and waits (``drain``) before the
registry is closed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import trio

from streamd.errors import Conflict
from streamd.service.leases import Lease, NodeLeases

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # seconds cancelled jobs get to put their images back on shutdown

Job = Callable[[], Awaitable[None]]


class ImageJobs:
    """The claims on images and the import jobs running in this process."""

    def __init__(self, lock_dir: Path | None = None, *, leases: NodeLeases | None = None
                 ) -> None:
        self._claims: dict[str, str] = {}  # image id -> what holds it ("stage", "import")
        self._jobs: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self._leases = leases  # None: one node (tests of the claims alone)
        self._lock_dir = lock_dir
        self._locks: dict[str, int] = {}  # image id -> the fd holding its flock
        if lock_dir is not None:
            lock_dir.mkdir(parents=True, exist_ok=True)

    def busy(self, image_id: str) -> str | None:
        """What holds ``image_id`` (e.g. "stage"), or None."""
        return self._claims.get(image_id)

    def _take(self, image_id: str, what: str) -> None:
        holder = self._claims.get(image_id)
        if holder is None and self._lock_dir is not None and not self._lock(image_id):
            holder = "stage or import in another worker process"
        if holder is not None:
            raise Conflict(f"New operation on image '{image_id}' is not permitted as prior "
                           f"operation is still in progress (a {holder} is running); retry "
                           "when it has finished")
        self._claims[image_id] = what

    def _lock(self, image_id: str) -> bool:
        """Take the image's flock without waiting; False if another process holds it.

        In the event loop: opening a small local file and a non-blocking flock do not wait
        on a disk. Lock files stay (removing one would let a second process lock a fresh
        file while a third still holds the old one); the name is a digest, never a path.
        """
        assert self._lock_dir is not None
        name = hashlib.sha256(image_id.encode()).hexdigest()[:32] + ".lock"
        fd = os.open(self._lock_dir / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._locks[image_id] = fd
        return True

    def _drop(self, image_id: str) -> None:
        del self._claims[image_id]
        fd = self._locks.pop(image_id, None)
        if fd is not None:
            os.close(fd)  # releases the flock

    @contextlib.contextmanager
    def claim(self, image_id: str, what: str) -> Iterator[None]:
        """Hold ``image_id`` for ``what`` during the block; 409 if something else holds it."""
        self._take(image_id, what)
        try:
            yield
        finally:
            self._drop(image_id)

    @contextlib.asynccontextmanager
    async def reserve(self, image_id: str, what: str = "import") -> AsyncIterator[Reservation]:
        """Claim ``image_id`` (409 if held here) and take its ``import`` lease (409 if another
        node holds it) for a job that ``Reservation.start`` launches.

        Until the job starts, claim and lease are the block's and end with it; once started,
        they are the job's and end with the job, which renews the lease meanwhile.
        """
        self._take(image_id, what)
        reservation = Reservation(self, image_id)
        try:
            if self._leases is not None:
                reservation.lease = await self._leases.acquire("import", image_id)
            yield reservation
        finally:
            if not reservation.started:
                if reservation.lease is not None:
                    await reservation.lease.release()
                self._drop(image_id)

    def _start(self, nursery: trio.Nursery, image_id: str, job: Job, lease: Lease | None
               ) -> None:
        scope, done = trio.CancelScope(), trio.Event()

        async def run() -> None:
            try:
                with scope:
                    if lease is None:
                        await job()
                    else:
                        # lost (the image deleted through another node): cancelled as by stop()
                        async with lease.kept(on_lost=lambda _: scope.cancel()):
                            await job()
            finally:
                del self._jobs[image_id]
                self._drop(image_id)
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

    async def wait(self, image_id: str) -> None:
        """Return once the job on ``image_id`` (if one runs here) has ended."""
        entry = self._jobs.get(image_id)
        if entry is not None:
            await entry[1].wait()

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
        self.lease: Lease | None = None

    def start(self, nursery: trio.Nursery, job: Job) -> None:
        """Run ``job`` in ``nursery``, holding the claim and the lease until it ends.

        ``job`` must not raise: an exception would take the server's nursery down. A
        cancellation (``ImageJobs.stop``, shutdown, the lease lost) is fine.
        """
        self._jobs._start(nursery, self.image_id, job, self.lease)
        self.started = True

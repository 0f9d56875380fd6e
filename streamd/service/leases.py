"""This node's leases on the work it does: taken before it starts, renewed while it runs,
given back when it ends.

Several API nodes share one registry. Whatever a node works on (an upload,
``upload:<image_id>``; a stage being written, ``stage:<image_id>``; an import job,
``import:<image_id>``) it holds by a lease (``streamd.registry.leases``) so that the others
can tell work in progress from work a crashed node left: a repair (``streamd.service.repair``)
takes over only a lease that has run out. A lease is renewed every ``lease_ttl / 3``
seconds by a task in the server's nursery, started and stopped (and waited for) by
``Lease.kept``, so two renewals may fail (the database briefly gone) before it lapses.

A renewal also notices when the work has lost its point: the lease was taken over (this
node's renewals failed for longer than the TTL and another node repaired the work), or the
image is gone (deleted through another node). Then ``on_lost`` is called, once, with the
reason; the caller passes what cancels the work (``TransferSlots.cancel_upload``, a job's
cancel scope), which then cleans up as it does when cancelled on this node.

Time: the registry's clock (``LeaseRegistry.clock``) stamps the leases and the waits between
renewals are ``trio.sleep``, so tests drive both with trio's ``MockClock`` and sleep nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import trio

from streamd.errors import Conflict, NotFound
from streamd.registry import ImageRegistry, LeaseRegistry

log = logging.getLogger(__name__)

RENEWALS_PER_TTL = 3  # a lease survives two failed renewals in a row
# what each kind of lease stands for, in a refusal: "an upload is in progress on node …"
KINDS = {"upload": "an upload", "stage": "a stage", "import": "an import"}

P = ParamSpec("P")
T = TypeVar("T")


def lease_key(kind: str, image_id: str) -> str:
    """The registry key of a ``kind`` lease on ``image_id`` (``upload:<image_id>``)."""
    if kind not in KINDS:
        raise ValueError(f"no lease kind {kind!r}")
    return f"{kind}:{image_id}"


def _exists(images: ImageRegistry, image_id: str) -> bool:
    try:
        images.get(image_id)
    except NotFound:
        return False
    return True


class NodeLeases:
    """The leases of one node (``node``) on images, ``ttl`` seconds each, renewed by tasks
    in ``nursery``; registry calls run in worker threads under ``limiter``."""

    def __init__(self, registry: LeaseRegistry, images: ImageRegistry, *, node: str,
                 ttl: float, nursery: trio.Nursery, limiter: trio.CapacityLimiter) -> None:
        self.registry = registry
        self.images = images
        self.node = node
        self.ttl = ttl
        self._nursery = nursery
        self._limiter = limiter

    async def _db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs),
                                             limiter=self._limiter, abandon_on_cancel=False)

    async def acquire(self, kind: str, image_id: str) -> Lease:
        """Take the ``kind`` lease on ``image_id`` for this node; 409 naming the node that
        holds it while it is live there."""
        key = lease_key(kind, image_id)
        # not renew_own: a second upload of one image on this node is refused like one on
        # another node (and must not end, releasing it, the lease of the first)
        if not await self._db(self.registry.acquire, key, self.node, self.ttl,
                              renew_own=False):
            holder = await self._db(self.registry.holder, key)
            where = f"node {holder.holder}" if holder is not None else "another node"
            raise Conflict(f"New operation on image '{image_id}' is not permitted: "
                           f"{KINDS[kind]} is in progress on {where}; retry when it has "
                           "finished")
        return Lease(self, key, image_id)

    async def take_over(self, kind: str, image_id: str) -> Lease | None:
        """Take the ``kind`` lease on ``image_id`` for a repair if nobody is working on it
        (it is free or has run out); None while a node, this one included, holds it."""
        key = lease_key(kind, image_id)
        if await self._db(self.registry.acquire, key, self.node, self.ttl, renew_own=False):
            return Lease(self, key, image_id)
        return None

    async def forget_own(self) -> int:
        """Release every lease this node holds: at start-up, before it serves, none of its
        work can be running any more (the work is repaired like a crashed node's, at once
        instead of one TTL later). Returns how many there were."""
        return await self._db(self.registry.release_all, self.node)

    @asynccontextmanager
    async def hold(self, kind: str, image_id: str, *,
                   on_lost: Callable[[str], None]) -> AsyncIterator[Lease]:
        """``acquire`` then ``Lease.kept`` for the block."""
        lease = await self.acquire(kind, image_id)
        async with lease.kept(on_lost=on_lost):
            yield lease


class Lease:
    """A lease this node holds on ``key``; ``lost`` is why it was lost, once it was."""

    def __init__(self, leases: NodeLeases, key: str, image_id: str) -> None:
        self._leases = leases
        self.key = key
        self.image_id = image_id
        self.lost: str | None = None

    @asynccontextmanager
    async def kept(self, *, on_lost: Callable[[str], None] | None = None
                   ) -> AsyncIterator[Lease]:
        """Renew the lease during the block, then release it (whatever the block does).

        After each renewal the image is looked up: once it is gone (deleted through another
        node), or a renewal finds the lease taken over, ``on_lost`` is called with the
        reason and renewals stop. A renewal that fails (the registry is unreachable) is
        logged and tried again at the next one.
        """
        scope, done = trio.CancelScope(), trio.Event()

        async def renew() -> None:
            try:
                with scope:
                    await self._renew(on_lost)
            finally:
                done.set()

        try:
            self._leases._nursery.start_soon(renew)
        except RuntimeError:  # the server's nursery is closing: the work is being cancelled
            done.set()
        try:
            yield self
        finally:
            scope.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()
            await self.release()

    async def _renew(self, on_lost: Callable[[str], None] | None) -> None:
        leases = self._leases
        interval = leases.ttl / RENEWALS_PER_TTL
        due = trio.current_time()
        while True:
            due += interval  # a steady beat: a slow registry call does not push the next one
            await trio.sleep_until(due)
            try:
                renewed = await leases._db(leases.registry.renew, self.key, leases.node,
                                           leases.ttl)
                wanted = renewed and await leases._db(_exists, leases.images, self.image_id)
            except Exception:
                log.exception("LEASE key=%s node=%s renewal failed; next try in %gs",
                              self.key, leases.node, interval)
                continue
            if not wanted:
                self.lost = ("its lease was taken over by another node" if not renewed
                             else "the image is gone")
                log.warning("LEASE key=%s node=%s lost: %s; stopping the work", self.key,
                            leases.node, self.lost)
                if on_lost is not None:
                    on_lost(self.lost)
                return

    async def release(self) -> None:
        """Give the lease back (shielded: the work is over, however it ended). A failure is
        logged: the lease then runs out by itself within the TTL."""
        leases = self._leases
        with trio.CancelScope(shield=True):
            try:
                await leases._db(leases.registry.release, self.key, leases.node)
            except Exception:
                log.exception("LEASE key=%s node=%s could not be released; it runs out in "
                              "%gs", self.key, leases.node, leases.ttl)

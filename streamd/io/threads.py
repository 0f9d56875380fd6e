"""Blocking file calls in worker threads: one place for the limiter and the error mapping.

The file store, the staging area and a staged file's reader all run their syscalls through
``trio.to_thread.run_sync`` under the data plane's shared limiter, and all turn an
``OSError`` into their own ``StoreError``/``StoreFull`` with a message naming what failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

_T = TypeVar("_T")


class BlockingCalls:
    """``run`` a blocking call in a worker thread; ``io`` also maps its ``OSError``.

    ``failure(exc, action)`` builds the error to raise for an ``OSError`` during ``action``
    ("read", "write", "delete").
    """

    def __init__(
        self,
        limiter: trio.CapacityLimiter | None,
        failure: Callable[[OSError, str], Exception],
    ) -> None:
        self.limiter = limiter
        self._failure = failure

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def io(self, action: str, fn: Callable[..., _T], *args: object) -> _T:
        try:
            return await self.run(fn, *args)
        except OSError as exc:
            raise self._failure(exc, action) from exc

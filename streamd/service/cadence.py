"""The loop every periodic job runs: a pass on a fixed cadence until cancelled.

The next pass is due ``interval`` after this one started, however long this one took: a
pass still busy in its threads when a test's ``MockClock`` jumps (or a slow pass on a real
clock) does not push the next one a whole interval further. A failed pass is logged and
tried again at the next one; it never stops the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger(__name__)


async def every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``job`` every ``interval`` seconds (the first time after one interval) until
    cancelled; ``what`` names it in the log when a pass fails."""
    due = trio.current_time() + interval
    while True:
        await trio.sleep_until(due)
        due = trio.current_time() + interval
        try:
            await job()
        except Exception:
            log.exception("%s failed; next try in %gs", what, interval)

"""A rate cap shared by all of a run's connections (``--max-rate``): on a link that others
use too, a transfer can be told to leave them room."""

from __future__ import annotations

from collections.abc import Callable

import trio


class Pace:
    """At most ``rate`` bytes per second over the life of the run (None: no cap)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = trio.current_time
                 ) -> None:
        self.rate = rate
        self._clock = clock
        self._start: float | None = None
        self._bytes = 0

    async def took(self, n: int) -> None:
        """Account for ``n`` bytes moved; sleep until the run is back under the cap."""
        if self.rate is None:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        self._bytes += n
        ahead = self._start + self._bytes / self.rate - now
        if ahead > 0:
            await trio.sleep(ahead)

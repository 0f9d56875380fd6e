"""One way to talk to the registry database, with one meaning for "the database is gone"."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from streamd.errors import ServiceUnavailable

log = logging.getLogger("streamd.registry")


@contextmanager
def connect(engine: sa.Engine, *, write: bool = False) -> Iterator[sa.Connection]:
    """A connection (``write``: a transaction, committed at the end of the block).

    A database that is gone, restarting or busy (locked, deadlocked) fails the call with
    ServiceUnavailable, which a client may retry; the pool's pre-ping and invalidation
    give the next call a new connection.
    """
    try:
        with (engine.begin() if write else engine.connect()) as conn:
            yield conn
    except DBAPIError as e:
        if not (isinstance(e, OperationalError) or e.connection_invalidated):
            raise
        cause = e.orig or e
        # the cause in words first, then the driver's first line ("database is locked",
        # "connection refused" …): enough to act on without a traceback
        log.warning("registry busy or unreachable, the request gets 503 (%s: %s)",
                    type(cause).__name__, (str(cause).splitlines() or [""])[0][:200])
        raise ServiceUnavailable(
            "The image registry's database is unavailable or busy; retry the request",
            headers={"Retry-After": "1"},
        ) from e

"""Leases: which API node is working on what, so that two nodes never repair each other's work.

Several API nodes share one registry. A node that claims a piece of work (an upload, a stage,
an import: a key such as ``upload:<image_id>``) holds it by a lease that it renews while it
works; another node takes the work over (repairs it) only after acquiring the lease, which
it can do only once the lease has expired. A crashed node's work is thus repaired one TTL
after its last renewal, and never while it is still running.

Every change is one conditional statement (``UPDATE … WHERE expires_at <= :now``, or an
``INSERT`` that the primary key lets only one node win), so two nodes racing for one key
can never both win, on SQLite, PostgreSQL and MySQL/MariaDB alike. A lease is live while
``now < expires_at``. Time comes from ``clock`` (naive UTC), so tests move it instead of
sleeping; expiry times are whole seconds, rounded up, which every database stores as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from streamd.registry.connection import connect
from streamd.registry.images import utcnow
from streamd.registry.models import leases as leases_t


class LeaseHolder(NamedTuple):
    """Who holds a lease and until when (it may have run out: compare with the clock)."""

    holder: str
    expires_at: dt.datetime


def _seconds(ttl: dt.timedelta | float) -> dt.timedelta:
    ttl = ttl if isinstance(ttl, dt.timedelta) else dt.timedelta(seconds=ttl)
    if ttl <= dt.timedelta(0):
        raise ValueError(f"a lease lasts a positive time, not {ttl}")
    return ttl


def _ceil_second(value: dt.datetime) -> dt.datetime:
    """``value`` rounded up to a whole second: MySQL would round it either way."""
    whole = value.replace(microsecond=0)
    return whole if whole == value else whole + dt.timedelta(seconds=1)


class LeaseRegistry:
    """The leases table behind one engine; ``clock`` says what time it is (naive UTC)."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def acquire(
        self, key: str, holder: str, ttl: dt.timedelta | float, *, renew_own: bool = True
    ) -> bool:
        """Take ``key`` for ``ttl`` (seconds or a timedelta): True when ``holder`` now has it.

        Free keys and expired leases are taken; a live lease of another holder is not. A
        holder acquiring what it already holds extends it (a restarted node with the same id
        takes its own work back at once), unless ``renew_own`` is False: then its own live
        lease is refused like any other (a periodic repair must not take over work that its
        own node is still doing and renewing).

        The insert comes first, in its own transaction, and the conditional update after it,
        in another: an update of a missing row followed by an insert would, on MySQL, take
        gap locks by which two racing nodes deadlock each other.
        """
        now = self.clock()
        expires = _ceil_second(now + _seconds(ttl))
        for _ in range(2):
            try:
                with connect(self.engine, write=True) as conn:
                    conn.execute(leases_t.insert().values(
                        key=key, holder=holder, expires_at=expires, acquired_at=now))
                return True
            except IntegrityError:
                pass  # the key has a lease: take it over if it ran out or is ours
            with connect(self.engine, write=True) as conn:
                taken = conn.execute(
                    leases_t.update()
                    .where(leases_t.c.key == key,
                           sa.or_(leases_t.c.expires_at <= now, leases_t.c.holder == holder)
                           if renew_own else leases_t.c.expires_at <= now)
                    .values(holder=holder, expires_at=expires, acquired_at=now)
                ).rowcount
                if taken:
                    return True
                # a live lease of another holder, unless it was released in between
                if conn.execute(sa.select(leases_t.c.key).where(leases_t.c.key == key)).first():
                    return False
        return False

    def renew(self, key: str, holder: str, ttl: dt.timedelta | float) -> bool:
        """Extend ``holder``'s lease to ``ttl`` from now; False when it is no longer theirs.

        A lease that ran out but was not taken over is still the holder's and is renewed:
        whoever wanted it had to acquire it first, and would then hold it.
        """
        now = self.clock()
        with connect(self.engine, write=True) as conn:
            return conn.execute(
                leases_t.update().where(leases_t.c.key == key, leases_t.c.holder == holder)
                .values(expires_at=_ceil_second(now + _seconds(ttl)))
            ).rowcount > 0

    def release(self, key: str, holder: str) -> bool:
        """Give ``key`` up (the work is done or handed back); False if it was not ``holder``'s."""
        with connect(self.engine, write=True) as conn:
            return conn.execute(
                leases_t.delete().where(leases_t.c.key == key, leases_t.c.holder == holder)
            ).rowcount > 0

    def release_all(self, holder: str) -> int:
        """Give up every lease of ``holder``; return how many. For a node starting up, none
        of whose work can be running any more: what it held is left to repair."""
        with connect(self.engine, write=True) as conn:
            return conn.execute(leases_t.delete().where(leases_t.c.holder == holder)).rowcount

    def holder(self, key: str) -> LeaseHolder | None:
        """Who holds ``key`` and until when, expired or not; None when nobody does."""
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(leases_t.c.holder, leases_t.c.expires_at)
                               .where(leases_t.c.key == key)).first()
        return None if row is None else LeaseHolder(row.holder, row.expires_at)

    def expired(self, prefix: str = "", limit: int = 100) -> list[str]:
        """Keys starting with ``prefix`` whose lease ran out, longest expired first: the work
        a crashed node left, for a repair to ``acquire`` one key at a time."""
        with connect(self.engine) as conn:
            return list(conn.execute(
                sa.select(leases_t.c.key)
                .where(leases_t.c.expires_at <= self.clock(),
                       leases_t.c.key.startswith(prefix, autoescape=True))
                .order_by(leases_t.c.expires_at, leases_t.c.key).limit(limit)
            ).scalars())

    def live(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` someone holds now: the work a repair must leave alone."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        with connect(self.engine) as conn:
            return set(conn.execute(
                sa.select(leases_t.c.key)
                .where(leases_t.c.key.in_(wanted), leases_t.c.expires_at > self.clock())
            ).scalars())

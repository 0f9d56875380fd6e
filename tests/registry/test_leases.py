"""Leases on every database: claimed, renewed, released, taken over only after expiry, on an
injected clock; nodes racing for one key (each with its own engine) never both win."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from streamd.registry import LeaseHolder, LeaseRegistry, make_engine
from tests.registry.conftest import FakeClock

TTL = 30  # seconds


@pytest.fixture
def leases(engine: sa.Engine, clock: FakeClock) -> LeaseRegistry:
    return LeaseRegistry(engine, clock=clock)


def test_acquire_a_free_key(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.holder("upload:1") is None
    assert leases.acquire("upload:1", "node-a", TTL)
    assert leases.holder("upload:1") == LeaseHolder("node-a", clock.now + dt.timedelta(seconds=TTL))
    assert leases.live(["upload:1", "upload:2"]) == {"upload:1"}


def test_a_live_lease_is_not_taken(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("upload:1", "node-a", TTL)
    clock.advance(TTL - 1)
    assert not leases.acquire("upload:1", "node-b", TTL)
    assert leases.holder("upload:1").holder == "node-a"  # type: ignore[union-attr]
    assert leases.expired("upload:") == []


def test_an_expired_lease_is_taken_over(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("upload:1", "node-a", TTL)
    clock.advance(TTL)  # live while now < expires_at
    assert leases.live(["upload:1"]) == set()
    assert leases.expired("upload:") == ["upload:1"]
    assert leases.acquire("upload:1", "node-b", TTL)
    assert leases.holder("upload:1") == LeaseHolder("node-b", clock.now + dt.timedelta(seconds=TTL))
    # the old holder learns it lost the lease and cannot give it away
    assert not leases.renew("upload:1", "node-a", TTL)
    assert not leases.release("upload:1", "node-a")
    assert leases.holder("upload:1").holder == "node-b"  # type: ignore[union-attr]


def test_renew_keeps_it_live(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("stage:1", "node-a", TTL)
    for _ in range(5):  # renewed more often than the TTL: never expires
        clock.advance(TTL - 5)
        assert leases.renew("stage:1", "node-a", TTL)
        assert not leases.acquire("stage:1", "node-b", TTL)
    assert leases.holder("stage:1") == LeaseHolder("node-a",
                                                   clock.now + dt.timedelta(seconds=TTL))
    assert not leases.renew("stage:1", "node-b", TTL)
    assert not leases.renew("stage:missing", "node-a", TTL)


def test_a_lapsed_lease_nobody_took_is_still_renewed(leases: LeaseRegistry,
                                                     clock: FakeClock) -> None:
    assert leases.acquire("import:1", "node-a", TTL)
    clock.advance(TTL * 3)
    assert leases.renew("import:1", "node-a", TTL)
    assert not leases.acquire("import:1", "node-b", TTL)


def test_acquire_again_extends_ones_own_lease(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("upload:1", "node-a", TTL)
    clock.advance(10)
    assert leases.acquire("upload:1", "node-a", TTL)
    assert leases.holder("upload:1").expires_at == clock.now + dt.timedelta(seconds=TTL)  # type: ignore[union-attr]


def test_without_renew_own_only_expired_leases_are_taken(leases: LeaseRegistry,
                                                         clock: FakeClock) -> None:
    """A periodic repair leaves its own node's live work alone, and takes lapsed work back."""
    assert leases.acquire("upload:1", "node-a", TTL)
    assert not leases.acquire("upload:1", "node-a", TTL, renew_own=False)
    clock.advance(TTL)
    assert leases.acquire("upload:1", "node-a", TTL, renew_own=False)
    assert leases.holder("upload:1").expires_at == clock.now + dt.timedelta(seconds=TTL)  # type: ignore[union-attr]
    assert leases.acquire("upload:2", "node-a", TTL, renew_own=False)  # a free key


def test_release(leases: LeaseRegistry) -> None:
    assert leases.acquire("upload:1", "node-a", TTL)
    assert not leases.release("upload:1", "node-b")
    assert leases.release("upload:1", "node-a")
    assert not leases.release("upload:1", "node-a")
    assert leases.holder("upload:1") is None
    assert leases.acquire("upload:1", "node-b", TTL)


def test_release_all_of_a_holder(leases: LeaseRegistry) -> None:
    for key in ("upload:1", "stage:2", "import:3"):
        assert leases.acquire(key, "node-a", TTL)
    assert leases.acquire("upload:4", "node-b", TTL)
    assert leases.release_all("node-a") == 3
    assert leases.live(["upload:1", "stage:2", "import:3", "upload:4"]) == {"upload:4"}
    assert leases.release_all("node-a") == 0


def test_expiry_is_rounded_up_to_a_second(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("k", "node-a", dt.timedelta(seconds=0.2))
    assert leases.holder("k").expires_at == clock.now + dt.timedelta(seconds=1)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="positive"):
        leases.acquire("k2", "node-a", 0)


def test_expired_by_prefix_oldest_first(leases: LeaseRegistry, clock: FakeClock) -> None:
    assert leases.acquire("upload:late", "node-a", TTL + 5)
    assert leases.acquire("upload:early", "node-a", TTL)
    assert leases.acquire("stage:1", "node-a", TTL)
    # LIKE's wildcards in a prefix are plain characters
    assert leases.acquire("upload_x", "node-a", TTL)
    assert leases.acquire("u%:1", "node-a", TTL)
    assert leases.acquire("upload:live", "node-b", TTL * 10)
    clock.advance(TTL + 5)
    assert leases.expired("upload:") == ["upload:early", "upload:late"]
    assert leases.expired("upload:", limit=1) == ["upload:early"]
    assert leases.expired("upload_") == ["upload_x"]
    assert leases.expired("u%") == ["u%:1"]
    assert len(leases.expired()) == 5
    assert leases.live(["upload:live", "upload:late", "nothing"]) == {"upload:live"}
    assert leases.live([]) == set()


# -- nodes racing --------------------------------------------------------------------------------


def _race(url: str, clock: FakeClock, racers: int, key: str) -> list[str]:
    """``racers`` nodes, each with its own engine and thread, acquire ``key`` at once."""
    engines = [make_engine(url) for _ in range(racers)]
    barrier = threading.Barrier(racers)
    winners: list[str] = []
    errors: list[BaseException] = []

    def node(i: int) -> None:
        registry = LeaseRegistry(engines[i], clock=clock)
        engines[i].connect().close()  # connected before the start: they race for the key only
        barrier.wait()
        try:
            if registry.acquire(key, f"node-{i}", TTL):
                winners.append(f"node-{i}")
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(racers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for e in engines:
            e.dispose()
    assert errors == []
    return winners


@pytest.mark.parametrize("racers", [2, 6])
def test_racing_for_a_free_key_one_wins(leases: LeaseRegistry, clock: FakeClock,
                                        engine: sa.Engine, racers: int) -> None:
    url = engine.url.render_as_string(hide_password=False)
    for round_ in range(5):
        key = f"upload:{round_}"
        [winner] = _race(url, clock, racers, key)
        assert leases.holder(key).holder == winner  # type: ignore[union-attr]


@pytest.mark.parametrize("racers", [2, 6])
def test_racing_for_an_expired_key_one_wins(leases: LeaseRegistry, clock: FakeClock,
                                            engine: sa.Engine, racers: int) -> None:
    url = engine.url.render_as_string(hide_password=False)
    for round_ in range(5):
        key = f"upload:{round_}"
        assert leases.acquire(key, "crashed", TTL)
        clock.advance(TTL)
        [winner] = _race(url, clock, racers, key)
        assert leases.holder(key).holder == winner  # type: ignore[union-attr]

"""The controller lease on a real PostgreSQL, two keepers as two controllers on two
machines: a standby waits while the lease lives, takes it once it expired, and from then
on the old holder's writes are refused in the database and its renewal makes it stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from corral.engine.standby import LEASE, LeaseKeeper
from corral.errors import ControllerError, Fenced
from corral.ports.lease import Lease
from corral.ports.records import Event
from corral.stores import SqlStore
from loopback import poll
from postgres import PostgresCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(postgres: PostgresCluster) -> Iterator[tuple[SqlStore, SqlStore]]:
    url = postgres.create_database()
    first, second = SqlStore(url), SqlStore(url)
    yield first, second
    first.close()
    second.close()


def note(action: str) -> Event:
    return Event(at=1.0, actor="tester", action=action, subject="controller")


def test_a_standby_takes_an_expired_lease_and_the_old_holder_is_fenced_and_stops(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store_a, store_b = stores
    lost: list[str] = []
    active = LeaseKeeper(store_a, ttl=1.0, holder="machine-a:100", on_lost=lost.append)
    first = active.acquire(standby=False, stopping=threading.Event())
    assert first is not None and first.epoch == 1
    store_a.append_event(note("acted while holding the lease"))
    # machine A pauses (no renewal, as under SIGSTOP or a network partition) ...
    standby = LeaseKeeper(store_b, ttl=1.0, holder="machine-b:200", on_lost=lost.append)
    waited: list[Lease] = []
    taken = standby.acquire(standby=True, stopping=threading.Event(), waiting=waited.append)
    assert taken is not None and (taken.holder, taken.epoch) == ("machine-b:200", 2)
    assert [w.holder for w in waited] == ["machine-a:100"]  # it did wait for A's lease
    # ... and wakes up: the database refuses what it tries, and its renewal says stop.
    with pytest.raises(Fenced, match="now held by machine-b:200"):
        store_a.append_event(note("acted after losing the lease"))
    active.start()
    poll(lambda: lost, 10, "the old holder to give up")
    assert lost == ["another controller holds the lease"]
    store_b.append_event(note("the new holder acts"))
    assert [e.action for e in store_b.events()] == ["acted while holding the lease",
                                                    "the new holder acts"]
    standby.stop()
    assert store_b.current_lease(LEASE) is None  # released: a next standby starts at once


def test_a_controller_started_while_another_lives_is_refused_and_named(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store_a, store_b = stores
    active = LeaseKeeper(store_a, ttl=30.0, holder="machine-a:100", on_lost=print)
    assert active.acquire(standby=False, stopping=threading.Event()) is not None
    second = LeaseKeeper(store_b, ttl=30.0, holder="machine-b:200", on_lost=print)
    with pytest.raises(ControllerError, match="controller machine-a:100 is active") as caught:
        second.acquire(standby=False, stopping=threading.Event())
    assert "--standby" in str(caught.value.hint)


def test_a_standby_asked_to_stop_while_waiting_never_acts(
        stores: tuple[SqlStore, SqlStore]) -> None:
    store_a, store_b = stores
    LeaseKeeper(store_a, ttl=30.0, holder="machine-a:100",
                on_lost=print).acquire(standby=False, stopping=threading.Event())
    stopping = threading.Event()
    standby = LeaseKeeper(store_b, ttl=30.0, holder="machine-b:200", on_lost=print)
    waited: list[Lease] = []
    results: list[Lease | None] = []
    thread = threading.Thread(target=lambda: results.append(standby.acquire(
        standby=True, stopping=stopping, waiting=waited.append)))
    thread.start()
    poll(lambda: waited, 10, "the standby to wait")
    stopping.set()  # SIGTERM to a waiting standby
    thread.join(timeout=30)
    assert results == [None]
    lease = store_b.current_lease(LEASE)
    assert lease is not None and lease.holder == "machine-a:100"

"""The LeaseStore contract (which controller is active, with fencing): every store passes it."""

from __future__ import annotations

import pytest
from store_cases import add, event

from corral.errors import Fenced
from corral.ports.lease import Lease, LeaseStore
from corral.ports.store import Store


def test_the_first_holder_gets_epoch_one_and_another_is_refused_until_expiry(
        store: LeaseStore) -> None:
    first = store.acquire_lease("controller", "a", 100.0, 10.0)
    assert first == Lease("controller", "a", 1, 110.0)
    assert store.acquire_lease("controller", "b", 105.0, 10.0) is None
    taken = store.acquire_lease("controller", "b", 110.5, 10.0)
    assert taken == Lease("controller", "b", 2, 120.5)
    assert store.current_lease("controller") == taken


def test_renewing_keeps_the_epoch_and_fails_once_the_lease_is_lost(store: LeaseStore) -> None:
    held = store.acquire_lease("controller", "a", 100.0, 10.0)
    assert held is not None
    renewed = store.renew_lease(held, 105.0, 10.0)
    assert renewed == Lease("controller", "a", 1, 115.0)
    assert store.acquire_lease("controller", "b", 112.0, 10.0) is None  # renewal counted
    assert store.renew_lease(renewed, 116.0, 10.0) is None  # expired at 115: lost
    assert store.acquire_lease("controller", "b", 116.0, 10.0) is not None
    assert store.renew_lease(renewed, 117.0, 10.0) is None


def test_a_lease_whose_holder_is_known_dead_is_taken_over_before_expiry(
        store: LeaseStore) -> None:
    dead = store.acquire_lease("controller", "host:1", 100.0, 60.0)
    assert dead is not None
    stale = Lease("controller", "host:1", 0, 160.0)  # not the stored lease: refused
    assert store.acquire_lease("controller", "host:2", 101.0, 60.0, replacing=stale) is None
    taken = store.acquire_lease("controller", "host:2", 101.0, 60.0, replacing=dead)
    assert taken == Lease("controller", "host:2", 2, 161.0)


def test_a_released_lease_is_free_at_once_and_the_next_holder_gets_a_new_epoch(
        store: LeaseStore) -> None:
    held = store.acquire_lease("controller", "a", 100.0, 60.0)
    assert held is not None
    store.release_lease(held)
    assert store.current_lease("controller") is None
    assert store.acquire_lease("controller", "b", 101.0, 60.0) == Lease(
        "controller", "b", 1, 161.0)


def test_a_fenced_store_refuses_every_write_once_its_lease_passed_on(store: Store) -> None:
    assert isinstance(store, LeaseStore)
    held = store.acquire_lease("controller", "a", 100.0, 10.0)
    assert held is not None
    store.fence(held)
    assert add(store) == 1  # still the holder: writes go through
    assert store.renew_lease(held, 105.0, 10.0) is not None
    assert store.acquire_lease("controller", "b", 200.0, 10.0) is not None  # a expired
    writes = [lambda: add(store), lambda: store.append_event(event()),
              lambda: store.set_live_release("web", 1, event()),
              lambda: store.acquire_lock("deploy:web", "a", 200.0, 10.0)]
    for write in writes:
        with pytest.raises(Fenced, match="lost the controller lease, now held by b"):
            write()
    store.fence(None)
    assert [e.action for e in store.events()] == ["release.created"]
    assert [r.version for r in store.list_releases("web")] == [1]

"""The LockStore contract: both stores pass it."""

from __future__ import annotations

from corral.ports.store import LockStore


def test_a_held_lock_refuses_another_holder_and_says_who_holds_it(store: LockStore) -> None:
    assert store.acquire_lock("deploy:web", "controller@host", 1000.0, 60.0) is None
    refusal = store.acquire_lock("deploy:web", "cli@host", 1010.0, 60.0)
    assert refusal is not None
    assert "controller@host" in refusal and "1970-01-01 00:17:40 UTC" in refusal
    assert store.acquire_lock("deploy:api", "cli@host", 1010.0, 60.0) is None


def test_the_holder_can_reacquire_its_lock_to_extend_it(store: LockStore) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    assert store.acquire_lock("deploy:web", "a", 1050.0, 60.0) is None
    # Extended to 1110: another holder is still refused after the first expiry (1060).
    assert store.acquire_lock("deploy:web", "b", 1070.0, 60.0) is not None


def test_an_expired_lock_is_taken_over(store: LockStore) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    assert store.acquire_lock("deploy:web", "b", 1060.0, 60.0) is None
    refusal = store.acquire_lock("deploy:web", "a", 1070.0, 60.0)
    assert refusal is not None and "held by b" in refusal


def test_releasing_a_lock_frees_it_but_only_for_its_holder(store: LockStore) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    store.release_lock("deploy:web", "b")
    assert store.acquire_lock("deploy:web", "b", 1001.0, 60.0) is not None
    store.release_lock("deploy:web", "a")
    assert store.acquire_lock("deploy:web", "b", 1002.0, 60.0) is None

"""The ReleaseStore contract (releases, the live one, bad marks): both stores pass it."""

from __future__ import annotations

import pytest
from store_cases import add, event

from corral.core.release import release_config
from corral.errors import NotFound
from corral.ports.store import ReleaseStore, Store
from corral.spec.model import ServiceSpec


def test_release_versions_count_up_from_one_per_service_independently(store: ReleaseStore) -> None:
    assert [add(store, "web"), add(store, "web"), add(store, "api"), add(store, "web")] == [
        1, 2, 1, 3]
    assert [r.version for r in store.list_releases("web")] == [1, 2, 3]
    assert [r.version for r in store.list_releases("api")] == [1]


def test_a_release_reads_back_exactly_as_written(store: ReleaseStore) -> None:
    config = {"env": {"A": "1"}, "argv": ["python3", "app.py"], "port": 8000, "ratio": 0.25,
              "volumes": {}, "user": None}
    made = store.add_release("web", "sha256:aaa", "sha256:c1", config, 1714550400.123456,
                             event(), git_commit="abc123", git_commit_time=1714550000.5)
    assert made.config == config
    assert store.get_release("web", 1) == made
    assert store.list_releases("web") == [made]


def test_a_stored_release_carries_the_service_spec_it_was_made_from(
        store: ReleaseStore) -> None:
    digest = "sha256:" + "a" * 64
    spec = ServiceSpec.model_validate({"image": digest, "replicas": 3, "strategy": "canary",
                                       "env": {"A": "1"}, "health": {"interval": "2s"}})
    store.add_release("web", digest, "sha256:c1", release_config(spec, digest), 100.0, event())
    read = store.get_release("web", 1)
    assert read is not None
    assert read.spec == spec  # ServiceSpec -> JSON data -> the store -> the same ServiceSpec
    assert read.spec is read.spec  # parsed once per record


def test_find_release_returns_the_newest_release_with_both_digests(store: ReleaseStore) -> None:
    add(store, image="sha256:aaa", config="sha256:c1")
    add(store, image="sha256:bbb", config="sha256:c1")
    add(store, image="sha256:aaa", config="sha256:c1")
    found = store.find_release("web", "sha256:aaa", "sha256:c1")
    assert found is not None and found.version == 3
    assert store.find_release("web", "sha256:aaa", "sha256:c2") is None
    assert store.find_release("api", "sha256:aaa", "sha256:c1") is None


def test_an_unknown_release_is_none(store: ReleaseStore) -> None:
    add(store)
    assert store.get_release("web", 2) is None
    assert store.get_release("web", 0) is None
    assert store.get_release("api", 1) is None
    assert store.list_releases("api") == []


def test_changing_a_release_that_was_read_does_not_change_the_store(store: ReleaseStore) -> None:
    add(store)
    read = store.get_release("web", 1)
    assert read is not None
    read.config["replicas"] = 99
    again = store.get_release("web", 1)
    assert again is not None and again.config == {"replicas": 1}


def test_services_are_those_with_at_least_one_release(store: ReleaseStore) -> None:
    assert store.services() == []
    add(store, "web")
    add(store, "api")
    add(store, "web")
    store.set_live_release("db", None, event("service.retired", "db"))
    assert store.services() == ["api", "web"]


# -- live release --------------------------------------------------------------------
def test_the_live_release_is_none_until_set_and_then_follows_each_set(store: ReleaseStore) -> None:
    add(store)
    add(store)
    assert store.live_release("web") is None
    store.set_live_release("web", 1, event("release.live"))
    assert store.live_release("web") == 1
    store.set_live_release("web", 2, event("release.live"))
    assert store.live_release("web") == 2
    store.set_live_release("web", None, event("service.retired"))
    assert store.live_release("web") is None


def test_making_an_unknown_release_live_is_refused_and_records_nothing(store: Store) -> None:
    add(store)
    before = len(store.events())
    with pytest.raises(NotFound, match="v7"):
        store.set_live_release("web", 7, event("release.live"))
    assert store.live_release("web") is None
    assert len(store.events()) == before


# -- marks ----------------------------------------------------------------------------
def test_a_release_marked_bad_is_listed_with_its_reason_until_cleared(store: ReleaseStore) -> None:
    add(store)
    add(store, config="sha256:c2")
    assert store.bad_releases("web") == {}
    store.set_release_mark("web", 2, "rolled back by alice", event("release.bad"))
    assert store.bad_releases("web") == {2: "rolled back by alice"}
    assert store.bad_releases("api") == {}
    store.set_release_mark("web", 2, None, event("release.good"))
    assert store.bad_releases("web") == {}


def test_marking_an_unknown_release_is_refused(store: ReleaseStore) -> None:
    with pytest.raises(NotFound):
        store.set_release_mark("web", 9, "bad", event("release.bad"))

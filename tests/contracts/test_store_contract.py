"""The Store contract: every store (the SQLite one and the in-memory fake) must pass it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.errors import NotFound
from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    Event,
    Instance,
    InstanceState,
)
from corral.ports.store import Store
from corral.stores import GENESIS_HASH, MemoryStore, SqlStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = (MemoryStore() if request.param == "memory"
                   else SqlStore(f"sqlite:///{tmp_path / '.corral' / 'state.db'}"))
    yield made
    made.close()


def event(action: str = "test", subject: str = "web", at: float = 100.0,
          **detail: object) -> Event:
    return Event(at=at, actor="tester", action=action, subject=subject, detail=dict(detail))


def add(store: Store, service: str = "web", image: str = "sha256:aaa",
        config: str = "sha256:c1", at: float = 100.0) -> int:
    return store.add_release(service, image, config, {"replicas": 1}, at,
                             event("release.created", service)).version


def instance(id: str, state: InstanceState = InstanceState.READY, service: str = "web",
             created_at: float = 100.0) -> Instance:
    return Instance(id=id, service=service, release=1, image_digest="sha256:aaa",
                    address="127.0.0.1:9000", state=state, created_at=created_at)


# -- releases ------------------------------------------------------------------------
def test_release_versions_count_up_from_one_per_service_independently(store: Store) -> None:
    assert [add(store, "web"), add(store, "web"), add(store, "api"), add(store, "web")] == [
        1, 2, 1, 3]
    assert [r.version for r in store.list_releases("web")] == [1, 2, 3]
    assert [r.version for r in store.list_releases("api")] == [1]


def test_a_release_reads_back_exactly_as_written(store: Store) -> None:
    config = {"env": {"A": "1"}, "argv": ["python3", "app.py"], "port": 8000, "ratio": 0.25,
              "volumes": {}, "user": None}
    made = store.add_release("web", "sha256:aaa", "sha256:c1", config, 1714550400.123456,
                             event(), git_commit="abc123", git_commit_time=1714550000.5)
    assert made.config == config
    assert store.get_release("web", 1) == made
    assert store.list_releases("web") == [made]


def test_find_release_returns_the_newest_release_with_both_digests(store: Store) -> None:
    add(store, image="sha256:aaa", config="sha256:c1")
    add(store, image="sha256:bbb", config="sha256:c1")
    add(store, image="sha256:aaa", config="sha256:c1")
    found = store.find_release("web", "sha256:aaa", "sha256:c1")
    assert found is not None and found.version == 3
    assert store.find_release("web", "sha256:aaa", "sha256:c2") is None
    assert store.find_release("api", "sha256:aaa", "sha256:c1") is None


def test_an_unknown_release_is_none(store: Store) -> None:
    add(store)
    assert store.get_release("web", 2) is None
    assert store.get_release("web", 0) is None
    assert store.get_release("api", 1) is None
    assert store.list_releases("api") == []


def test_changing_a_release_that_was_read_does_not_change_the_store(store: Store) -> None:
    add(store)
    read = store.get_release("web", 1)
    assert read is not None
    read.config["replicas"] = 99
    again = store.get_release("web", 1)
    assert again is not None and again.config == {"replicas": 1}


def test_services_are_those_with_at_least_one_release(store: Store) -> None:
    assert store.services() == []
    add(store, "web")
    add(store, "api")
    add(store, "web")
    store.set_live_release("db", None, event("service.retired", "db"))
    assert store.services() == ["api", "web"]


# -- live release --------------------------------------------------------------------
def test_the_live_release_is_none_until_set_and_then_follows_each_set(store: Store) -> None:
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


# -- instances -----------------------------------------------------------------------
def test_putting_an_instance_twice_replaces_it(store: Store) -> None:
    first = instance("i-1", InstanceState.STARTING)
    store.put_instance(first, event("instance.started"))
    ready = first.moved_to(InstanceState.READY, reason="health passed")
    store.put_instance(ready)
    assert store.get_instance("i-1") == ready
    assert store.list_instances("web") == [ready]
    assert store.get_instance("i-404") is None


def test_an_instance_reads_back_with_its_state_as_an_enum(store: Store) -> None:
    full = Instance(id="i-1", service="web", release=3, image_digest="sha256:aaa",
                    address="127.0.0.1:9001", state=InstanceState.FAILED, created_at=10.5,
                    pid=4242, ended_at=20.25, reason="exited with 3")
    store.put_instance(full)
    got = store.get_instance("i-1")
    assert got == full
    assert got is not None and type(got.state) is InstanceState


def test_listing_instances_keeps_live_ones_unless_asked_for_all(store: Store) -> None:
    states = [InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY,
              InstanceState.DRAINING, InstanceState.STOPPED, InstanceState.FAILED]
    for n, state in enumerate(states):
        store.put_instance(instance(f"i-{n}", state, created_at=100.0 + n))
    store.put_instance(instance("other", service="api", created_at=50.0))
    assert [i.id for i in store.list_instances("web")] == ["i-0", "i-1", "i-2", "i-3"]
    assert [i.id for i in store.list_instances("web", live_only=False)] == [
        f"i-{n}" for n in range(6)]
    assert [i.id for i in store.list_instances()] == ["other", "i-0", "i-1", "i-2", "i-3"]


def test_instances_are_listed_oldest_first(store: Store) -> None:
    store.put_instance(instance("b", created_at=300.0))
    store.put_instance(instance("a", created_at=200.0))
    store.put_instance(instance("c", created_at=100.0))
    assert [i.id for i in store.list_instances()] == ["c", "a", "b"]


# -- deployments ---------------------------------------------------------------------
def deploy(store: Store, service: str = "web", started_at: float = 100.0) -> Deployment:
    return store.create_deployment(service, "rolling", 1, 2, 3, started_at,
                                   event("deployment.started", service))


def test_a_new_deployment_is_running_and_reads_back(store: Store) -> None:
    made = deploy(store)
    assert made.outcome is DeploymentOutcome.RUNNING
    assert (made.service, made.strategy, made.from_release, made.to_release,
            made.replicas, made.started_at) == ("web", "rolling", 1, 2, 3, 100.0)
    assert store.get_deployment(made.id) == made
    assert store.get_deployment(made.id + 1000) is None


def test_finishing_a_deployment_records_its_outcome(store: Store) -> None:
    made = deploy(store)
    done = store.finish_deployment(made.id, DeploymentOutcome.ROLLED_BACK, 130.0,
                                   "p99 latency 900ms > 500ms", event("deployment.finished"))
    assert done.outcome is DeploymentOutcome.ROLLED_BACK
    assert (done.ended_at, done.reason) == (130.0, "p99 latency 900ms > 500ms")
    assert store.get_deployment(made.id) == done


def test_finishing_an_unknown_deployment_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.finish_deployment(41, DeploymentOutcome.SUCCEEDED, 1.0, None, event())


def test_deployments_are_listed_newest_first_and_by_service(store: Store) -> None:
    first, second, other = deploy(store, "web"), deploy(store, "web", 200.0), deploy(store, "api")
    assert [d.id for d in store.list_deployments()] == [other.id, second.id, first.id]
    assert [d.id for d in store.list_deployments("web")] == [second.id, first.id]
    assert len({first.id, second.id, other.id}) == 3


def test_steps_are_numbered_and_listed_in_order_per_deployment(store: Store) -> None:
    one, two = deploy(store), deploy(store)
    store.add_step(one.id, "StartInstances", {"count": 1, "ids": ["i-1"]}, 101.0)
    store.add_step(two.id, "StartInstances", {"count": 2}, 102.0)
    last = store.add_step(one.id, "SetWeights", {"weights": {"v1": 50, "v2": 50}}, 103.0)
    steps = store.list_steps(one.id)
    assert [(s.seq, s.kind) for s in steps] == [(1, "StartInstances"), (2, "SetWeights")]
    assert steps[0].detail == {"count": 1, "ids": ["i-1"]}
    assert steps[1] == last
    assert [s.seq for s in store.list_steps(two.id)] == [1]
    assert store.list_steps(999) == []


def test_a_step_of_an_unknown_deployment_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.add_step(999, "Stop", {}, 1.0)


# -- locks ---------------------------------------------------------------------------
def test_a_held_lock_refuses_another_holder_and_says_who_holds_it(store: Store) -> None:
    assert store.acquire_lock("deploy:web", "controller@host", 1000.0, 60.0) is None
    refusal = store.acquire_lock("deploy:web", "cli@host", 1010.0, 60.0)
    assert refusal is not None
    assert "controller@host" in refusal and "1970-01-01 00:17:40 UTC" in refusal
    assert store.acquire_lock("deploy:api", "cli@host", 1010.0, 60.0) is None


def test_the_holder_can_reacquire_its_lock_to_extend_it(store: Store) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    assert store.acquire_lock("deploy:web", "a", 1050.0, 60.0) is None
    # Extended to 1110: another holder is still refused after the first expiry (1060).
    assert store.acquire_lock("deploy:web", "b", 1070.0, 60.0) is not None


def test_an_expired_lock_is_taken_over(store: Store) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    assert store.acquire_lock("deploy:web", "b", 1060.0, 60.0) is None
    refusal = store.acquire_lock("deploy:web", "a", 1070.0, 60.0)
    assert refusal is not None and "held by b" in refusal


def test_releasing_a_lock_frees_it_but_only_for_its_holder(store: Store) -> None:
    assert store.acquire_lock("deploy:web", "a", 1000.0, 60.0) is None
    store.release_lock("deploy:web", "b")
    assert store.acquire_lock("deploy:web", "b", 1001.0, 60.0) is not None
    store.release_lock("deploy:web", "a")
    assert store.acquire_lock("deploy:web", "b", 1002.0, 60.0) is None


# -- ledger --------------------------------------------------------------------------
def assert_unbroken_chain(entries: list[Event]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    previous = GENESIS_HASH
    for entry in entries:
        assert entry.prev_hash == previous
        assert entry.hash == entry.compute_hash()
        previous = entry.hash


def test_every_event_links_to_the_one_before(store: Store) -> None:
    add(store)
    store.set_live_release("web", 1, event("release.live"))
    made = deploy(store)
    store.finish_deployment(made.id, DeploymentOutcome.SUCCEEDED, 150.0, None, event())
    store.put_instance(instance("i-1"), event("instance.ready"))
    store.append_event(event("note", detail={"nested": [1, 2.5, None]}))
    entries = store.events()
    assert len(entries) == 6
    assert entries[0].prev_hash == GENESIS_HASH
    assert_unbroken_chain(entries)


def test_an_appended_event_comes_back_as_it_was_returned(store: Store) -> None:
    appended = store.append_event(Event(at=1714550400.123456, actor="alice", action="note",
                                        subject="web", detail={"pair": (1, 2), "n": 3}))
    assert appended.detail == {"pair": [1, 2], "n": 3}
    assert appended.hash == appended.compute_hash()
    assert store.events() == [appended]


def test_events_can_be_read_from_a_seq_and_limited(store: Store) -> None:
    for n in range(5):
        store.append_event(event(f"note {n}"))
    assert [e.seq for e in store.events(since_seq=2)] == [3, 4, 5]
    assert [e.seq for e in store.events(since_seq=1, limit=2)] == [2, 3]
    assert store.events(since_seq=5) == []


def test_the_store_names_the_release_and_deployment_it_numbered_in_their_events(
        store: Store) -> None:
    add(store)
    made = deploy(store)
    created, started = store.events()
    assert created.detail["version"] == 1
    assert started.detail["deployment"] == made.id


MUTATIONS: dict[str, Callable[[Store], object]] = {
    "add_release": lambda s: add(s),
    "set_live_release": lambda s: s.set_live_release("web", 1, event("release.live")),
    "put_instance": lambda s: s.put_instance(instance("i-9"), event("instance.started")),
    "create_deployment": lambda s: deploy(s),
    "finish_deployment": lambda s: s.finish_deployment(
        1, DeploymentOutcome.ABORTED, 200.0, "aborted by alice", event("deployment.aborted")),
    "append_event": lambda s: s.append_event(event("note")),
    "set_traffic": lambda s: s.set_traffic("web", {"weights": {"1": 100}}, event("traffic")),
    "set_release_mark": lambda s: s.set_release_mark("web", 1, "rolled back", event("bad")),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_mutation_with_an_event_writes_exactly_one_event(store: Store, name: str) -> None:
    add(store)
    deploy(store)
    before = store.events()
    MUTATIONS[name](store)
    after = store.events()
    assert len(after) == len(before) + 1
    assert after[:-1] == before
    assert_unbroken_chain(after)


def test_changes_without_an_event_write_none(store: Store) -> None:
    made = deploy(store)
    before = store.events()
    store.put_instance(instance("i-1"))
    store.add_step(made.id, "AwaitHealthy", {}, 101.0)
    store.acquire_lock("deploy:web", "a", 100.0, 60.0)
    store.release_lock("deploy:web", "a")
    store.save_progress(made.id, {"phase": "scale"}, 101.0)
    assert store.events() == before


# -- progressive delivery ------------------------------------------------------------
def test_a_deployment_has_no_progress_until_saved_and_then_the_last_one(store: Store) -> None:
    made = deploy(store)
    assert store.get_progress(made.id) is None
    store.save_progress(made.id, {"phase": "scale", "step": 0}, 101.0)
    store.save_progress(made.id, {"phase": "analyse", "step": 1, "baseline": {"v1": [1, 2]}},
                        102.0)
    assert store.get_progress(made.id) == {"phase": "analyse", "step": 1,
                                           "baseline": {"v1": [1, 2]}}


def test_saving_progress_of_an_unknown_deployment_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.save_progress(42, {"phase": "start"}, 100.0)


def test_a_service_traffic_policy_is_replaced_and_forgotten(store: Store) -> None:
    assert store.get_traffic("web") is None
    store.set_traffic("web", {"weights": {"2": 100, "1": 0}, "warm": {"release": 1}},
                      event("traffic"))
    store.set_traffic("web", {"weights": {"2": 100}}, event("traffic"))
    assert store.get_traffic("web") == {"weights": {"2": 100}}
    assert store.get_traffic("api") is None
    store.set_traffic("web", None, event("traffic"))
    assert store.get_traffic("web") is None


def test_a_release_marked_bad_is_listed_with_its_reason_until_cleared(store: Store) -> None:
    add(store)
    add(store, config="sha256:c2")
    assert store.bad_releases("web") == {}
    store.set_release_mark("web", 2, "rolled back by alice", event("release.bad"))
    assert store.bad_releases("web") == {2: "rolled back by alice"}
    assert store.bad_releases("api") == {}
    store.set_release_mark("web", 2, None, event("release.good"))
    assert store.bad_releases("web") == {}


def test_marking_an_unknown_release_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        store.set_release_mark("web", 9, "bad", event("release.bad"))

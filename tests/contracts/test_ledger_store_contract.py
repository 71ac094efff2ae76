"""The LedgerStore contract (appending, the hash chain, reading and filtering), and that
every change a store records with an event writes exactly one: both stores pass it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from store_cases import add, deploy, event, instance

from corral.core.ledger import verify_chain
from corral.ports.ledger import EventFilter
from corral.ports.records import DeploymentOutcome, Event
from corral.ports.store import LedgerStore, Store
from corral.stores import GENESIS_HASH
from ledger_chain import assert_unbroken_chain


def append(store: LedgerStore, at: float, action: str, subject: str, actor: str = "ann",
           **detail: object) -> None:
    store.append_event(Event(at=at, actor=actor, action=action, subject=subject,
                             detail=dict(detail)))


@pytest.fixture
def ledger(store: LedgerStore) -> LedgerStore:
    append(store, 10, "deployment.start", "web", deployment=1)
    append(store, 20, "instance.ready", "web/web-a1", reason="health check passed")
    append(store, 30, "deployment.succeeded", "web", actor="bob", deployment=1)
    append(store, 40, "deployment.start", "webshop", deployment=2)
    append(store, 50, "deploymentx", "web")
    append(store, 60, "controller.stop", "controller", actor="bob")
    return store


def actions(events: list[Event]) -> list[str]:
    return [f"{e.seq}:{e.action}" for e in events]


def test_no_filter_reads_every_entry_oldest_first(ledger: LedgerStore) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter())] == [1, 2, 3, 4, 5, 6]


def test_service_matches_its_subject_and_its_instances_but_no_longer_names(
        ledger: LedgerStore) -> None:
    assert actions(ledger.find_events(EventFilter(service="web"))) == [
        "1:deployment.start", "2:instance.ready", "3:deployment.succeeded", "5:deploymentx"]


def test_action_matches_itself_and_its_family_only(ledger: LedgerStore) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter(action="deployment"))] == [1, 3, 4]
    assert [e.seq for e in ledger.find_events(EventFilter(action="deployment.start"))] == [1, 4]


def test_actor_time_and_limit_filters_combine(ledger: LedgerStore) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter(actor="bob"))] == [3, 6]
    assert [e.seq for e in ledger.find_events(EventFilter(since=20, until=50))] == [2, 3, 4]
    assert [e.seq for e in ledger.find_events(EventFilter(service="web", limit=2))] == [3, 5]


def test_a_like_wildcard_in_a_name_is_taken_literally(store: LedgerStore) -> None:
    append(store, 1, "a", "w%b")
    append(store, 2, "a", "wxb/1")
    assert [e.subject for e in store.find_events(EventFilter(service="w%b"))] == ["w%b"]


def test_raw_events_are_the_rows_as_stored_and_verify(ledger: LedgerStore) -> None:
    rows = ledger.raw_events()
    events = ledger.events()
    assert [r.seq for r in rows] == [e.seq for e in events]
    assert all(json.loads(r.detail) == e.detail and r.hash == e.hash
               for r, e in zip(rows, events, strict=True))
    assert [r.seq for r in ledger.raw_events(since_seq=2, limit=3)] == [3, 4, 5]
    verdict = verify_chain(rows)
    assert verdict.ok and verdict.checked == 6 and verdict.head.hash == events[-1].hash


# -- the chain ------------------------------------------------------------------------
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


def test_an_appended_event_comes_back_as_it_was_returned(store: LedgerStore) -> None:
    appended = store.append_event(Event(at=1714550400.123456, actor="alice", action="note",
                                        subject="web", detail={"pair": (1, 2), "n": 3}))
    assert appended.detail == {"pair": [1, 2], "n": 3}
    assert appended.hash == appended.compute_hash()
    assert store.events() == [appended]


def test_events_can_be_read_from_a_seq_and_limited(store: LedgerStore) -> None:
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

"""The Store contract, ledger reading part (find_events, raw_events): both stores pass it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.core.ledger import verify_chain
from corral.ports.ledger import EventFilter
from corral.ports.records import Event
from corral.ports.store import Store
from corral.stores import MemoryStore, SqlStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = (MemoryStore() if request.param == "memory"
                   else SqlStore(f"sqlite:///{tmp_path / '.corral' / 'state.db'}"))
    yield made
    made.close()


def append(store: Store, at: float, action: str, subject: str, actor: str = "ann",
           **detail: object) -> None:
    store.append_event(Event(at=at, actor=actor, action=action, subject=subject,
                             detail=dict(detail)))


@pytest.fixture
def ledger(store: Store) -> Store:
    append(store, 10, "deployment.start", "web", deployment=1)
    append(store, 20, "instance.ready", "web/web-a1", reason="health check passed")
    append(store, 30, "deployment.succeeded", "web", actor="bob", deployment=1)
    append(store, 40, "deployment.start", "webshop", deployment=2)
    append(store, 50, "deploymentx", "web")
    append(store, 60, "controller.stop", "controller", actor="bob")
    return store


def actions(events: list[Event]) -> list[str]:
    return [f"{e.seq}:{e.action}" for e in events]


def test_no_filter_reads_every_entry_oldest_first(ledger: Store) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter())] == [1, 2, 3, 4, 5, 6]


def test_service_matches_its_subject_and_its_instances_but_no_longer_names(ledger: Store) -> None:
    assert actions(ledger.find_events(EventFilter(service="web"))) == [
        "1:deployment.start", "2:instance.ready", "3:deployment.succeeded", "5:deploymentx"]


def test_action_matches_itself_and_its_family_only(ledger: Store) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter(action="deployment"))] == [1, 3, 4]
    assert [e.seq for e in ledger.find_events(EventFilter(action="deployment.start"))] == [1, 4]


def test_actor_time_and_limit_filters_combine(ledger: Store) -> None:
    assert [e.seq for e in ledger.find_events(EventFilter(actor="bob"))] == [3, 6]
    assert [e.seq for e in ledger.find_events(EventFilter(since=20, until=50))] == [2, 3, 4]
    assert [e.seq for e in ledger.find_events(EventFilter(service="web", limit=2))] == [3, 5]


def test_a_like_wildcard_in_a_name_is_taken_literally(store: Store) -> None:
    append(store, 1, "a", "w%b")
    append(store, 2, "a", "wxb/1")
    assert [e.subject for e in store.find_events(EventFilter(service="w%b"))] == ["w%b"]


def test_raw_events_are_the_rows_as_stored_and_verify(ledger: Store) -> None:
    rows = ledger.raw_events()
    events = ledger.events()
    assert [r.seq for r in rows] == [e.seq for e in events]
    assert all(json.loads(r.detail) == e.detail and r.hash == e.hash
               for r, e in zip(rows, events, strict=True))
    assert [r.seq for r in ledger.raw_events(since_seq=2, limit=3)] == [3, 4, 5]
    verdict = verify_chain(rows)
    assert verdict.ok and verdict.checked == 6 and verdict.head.hash == events[-1].hash

"""The SnapshotStore contract (backup and restore of a whole store): every pair of SQL
stores, SQLite and PostgreSQL either way, round-trips a snapshot exactly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from store_cases import add, deploy, event, instance

from corral.core.ledger import verify_chain
from corral.errors import StoreError
from corral.ports.records import DeploymentOutcome, InstanceState
from corral.ports.snapshot import SnapshotStore
from corral.ports.store import Store
from corral.stores import MemoryStore, SqlStore
from corral.stores.migrations import LATEST

StoreFactory = Callable[[str], SqlStore]  # the sql_stores fixture (conftest.py)
PG = pytest.mark.integration
PAIRS = [pytest.param("sqlite", "sqlite", id="sqlite-to-sqlite"),
         pytest.param("sqlite", "postgresql", id="sqlite-to-postgresql", marks=PG),
         pytest.param("postgresql", "sqlite", id="postgresql-to-sqlite", marks=PG),
         pytest.param("postgresql", "postgresql", id="postgresql-to-postgresql", marks=PG)]


def fill(store: Store) -> None:
    """A store with one of everything a snapshot must carry."""
    add(store, "web", "sha256:aaa")
    add(store, "web", "sha256:bbb", config="sha256:c2")
    add(store, "api")
    store.set_live_release("web", 2, event("release.live"))
    store.set_release_mark("web", 1, "error rate 0.2", event("release.bad"))
    store.put_instance(instance("web-1"), event("instance.start"))
    store.put_instance(instance("web-0", InstanceState.STOPPED, created_at=50.0))
    first = deploy(store)
    store.add_step(first.id, "StartInstances", {"count": 2}, 101.0)
    store.save_progress(first.id, {"step": 1, "weights": {"v2": 10}}, 101.5)
    store.finish_deployment(first.id, DeploymentOutcome.SUCCEEDED, 102.0, None,
                            event("deployment.finish"))
    deploy(store, started_at=200.0)
    store.set_traffic("web", {"weights": {"2": 100}, "warm": 1}, event("traffic.set"))
    store.acquire_lock("deploy:web", "controller@a", 100.0, 60.0)


def everything(store: Store) -> dict[str, object]:
    return {"services": store.services(), "web": store.list_releases("web"),
            "api": store.list_releases("api"), "live": store.live_release("web"),
            "bad": store.bad_releases("web"),
            "instances": store.list_instances(live_only=False),
            "deployments": store.list_deployments(),
            "steps": [store.list_steps(d.id) for d in store.list_deployments()],
            "progress": [store.get_progress(d.id) for d in store.list_deployments()],
            "traffic": store.get_traffic("web"), "ledger": store.events()}


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_a_snapshot_loaded_into_an_empty_store_reads_back_the_same(
        sql_stores: StoreFactory, source: str, target: str) -> None:
    taken, restored = sql_stores(source), sql_stores(target)
    fill(taken)
    restored.load_snapshot(taken.snapshot())
    assert everything(restored) == everything(taken)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_a_restored_store_continues_the_ledger_chain_and_the_numbering(
        sql_stores: StoreFactory, source: str, target: str) -> None:
    taken, restored = sql_stores(source), sql_stores(target)
    fill(taken)
    restored.load_snapshot(taken.snapshot())
    head = taken.events()[-1]
    appended = restored.append_event(event("backup.restore"))
    assert (appended.seq, appended.prev_hash) == (head.seq + 1, head.hash)
    assert verify_chain(restored.raw_events()).ok
    assert add(restored, "web") == 3
    assert deploy(restored, started_at=300.0).id == 3


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_locks_stay_with_the_processes_that_held_them(sql_stores: StoreFactory,
                                                      kind: str) -> None:
    taken, restored = sql_stores(kind), sql_stores(kind)
    fill(taken)
    assert "locks" not in taken.snapshot().tables
    restored.load_snapshot(taken.snapshot())
    assert restored.acquire_lock("deploy:web", "controller@b", 101.0, 60.0) is None


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_a_snapshot_is_refused_by_a_store_that_holds_history(sql_stores: StoreFactory,
                                                             kind: str) -> None:
    taken, busy = sql_stores(kind), sql_stores(kind)
    fill(taken)
    busy.append_event(event("note"))
    with pytest.raises(StoreError, match="not empty"):
        busy.load_snapshot(taken.snapshot())
    assert len(busy.events()) == 1


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_a_snapshot_of_another_schema_version_is_refused(sql_stores: StoreFactory,
                                                         kind: str) -> None:
    taken, restored = sql_stores(kind), sql_stores(kind)
    fill(taken)
    newer = replace(taken.snapshot(), schema_version=LATEST + 1)
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}"):
        restored.load_snapshot(newer)
    assert restored.events() == []


def test_the_sql_store_has_the_snapshot_ability_and_the_fake_does_not(
        sql_stores: StoreFactory) -> None:
    assert isinstance(sql_stores("sqlite"), SnapshotStore)
    assert not isinstance(MemoryStore(), SnapshotStore)

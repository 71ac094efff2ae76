"""The InstanceStore contract: both stores pass it."""

from __future__ import annotations

from store_cases import event, instance

from corral.ports.records import Instance, InstanceState
from corral.ports.store import InstanceStore


def test_putting_an_instance_twice_replaces_it(store: InstanceStore) -> None:
    first = instance("i-1", InstanceState.STARTING)
    store.put_instance(first, event("instance.started"))
    ready = first.moved_to(InstanceState.READY, reason="health passed")
    store.put_instance(ready)
    assert store.get_instance("i-1") == ready
    assert store.list_instances("web") == [ready]
    assert store.get_instance("i-404") is None


def test_an_instance_reads_back_with_its_state_as_an_enum(store: InstanceStore) -> None:
    full = Instance(id="i-1", service="web", release=3, image_digest="sha256:aaa",
                    address="127.0.0.1:9001", state=InstanceState.FAILED, created_at=10.5,
                    pid=4242, ended_at=20.25, reason="exited with 3")
    store.put_instance(full)
    got = store.get_instance("i-1")
    assert got == full
    assert got is not None and type(got.state) is InstanceState


def test_listing_instances_keeps_live_ones_unless_asked_for_all(store: InstanceStore) -> None:
    states = [InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY,
              InstanceState.DRAINING, InstanceState.STOPPED, InstanceState.FAILED]
    for n, state in enumerate(states):
        store.put_instance(instance(f"i-{n}", state, created_at=100.0 + n))
    store.put_instance(instance("other", service="api", created_at=50.0))
    assert [i.id for i in store.list_instances("web")] == ["i-0", "i-1", "i-2", "i-3"]
    assert [i.id for i in store.list_instances("web", live_only=False)] == [
        f"i-{n}" for n in range(6)]
    assert [i.id for i in store.list_instances()] == ["other", "i-0", "i-1", "i-2", "i-3"]


def test_instances_are_listed_oldest_first(store: InstanceStore) -> None:
    store.put_instance(instance("b", created_at=300.0))
    store.put_instance(instance("a", created_at=200.0))
    store.put_instance(instance("c", created_at=100.0))
    assert [i.id for i in store.list_instances()] == ["c", "a", "b"]

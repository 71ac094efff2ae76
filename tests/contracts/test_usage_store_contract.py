"""The UsageStore contract (sampled usage per instance and hour): every store passes it."""

from __future__ import annotations

from corral.ports.records import UsageTally
from corral.ports.store import UsageStore

H = 3600.0


def tally(instance: str, hour: float, seconds: float = 60.0, memory: float = 100.0,
          cpu: float = 1.0, service: str = "web") -> UsageTally:
    return UsageTally(instance, service, 1, hour, seconds, memory * seconds, cpu)


def test_tallies_of_one_instance_and_hour_are_summed_into_one_row(store: UsageStore) -> None:
    store.add_usage([tally("a", H), tally("b", H)])
    store.add_usage([tally("a", H, seconds=30.0, memory=200.0, cpu=0.5)])

    a, b = store.list_usage(0.0, 10 * H)
    assert a == UsageTally("a", "web", 1, H, 90.0, 6000.0 + 6000.0, 1.5, samples=2)
    assert b == tally("b", H)


def test_rows_are_listed_by_hour_within_the_window_and_by_service(store: UsageStore) -> None:
    store.add_usage([tally("a", 2 * H), tally("a", H), tally("a", 3 * H),
                     tally("w", 2 * H, service="worker")])
    store.add_usage([])  # nothing sampled: nothing written

    assert [(t.instance_id, t.hour) for t in store.list_usage(H, 3 * H)] == [
        ("a", H), ("a", 2 * H), ("w", 2 * H)]
    assert [t.hour for t in store.list_usage(0.0, 10 * H, "web")] == [H, 2 * H, 3 * H]
    assert store.list_usage(4 * H, 10 * H) == []
